/**
 * The pgoutput decoder and the replication framing against real servers: the
 * raw messages of real workloads (via `pg_logical_slot_peek_binary_changes`
 * and via a live START_REPLICATION stream) decode to exactly the expected
 * structs, on every major in KVSZ_TEST_PG_VERSIONS (one cluster per major).
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import type postgres from "postgres";
import { startCluster, type TestCluster, testVersions } from "../support/cluster.ts";
import { connect } from "../../lib/pg/connect.ts";
import { parseLsn } from "../../lib/pg/lsn.ts";
import { PgoutputDecoder } from "../../lib/source/pgoutput.ts";
import {
  type CopyDataFrame,
  encodeStandbyStatus,
  parseCopyData,
  pgNowMicros,
  protoVersionFor,
  startReplicationCommand,
} from "../../lib/source/replication_protocol.ts";
import type {
  BeginMessage,
  CommitMessage,
  PgoutputMessage,
  RelationMessage,
} from "../../lib/source/messages.ts";

/** One row of `pg_logical_slot_peek_binary_changes`. */
interface Change {
  lsn: bigint;
  xid: number;
  data: Uint8Array;
}

/** A decoded transaction: its Begin, its Commit, and what came between. */
interface Txn {
  begin: BeginMessage;
  commit: CommitMessage;
  changes: PgoutputMessage[];
}

async function peek(
  sql: postgres.Sql,
  slot: string,
  options: Record<string, string>,
): Promise<Change[]> {
  const args = [slot, ...Object.entries(options).flat()];
  const params = args.slice(1).map((_, i) => `$${i + 2}`).join(", ");
  const rows = await sql.unsafe(
    `SELECT lsn::text AS lsn, xid::text AS xid, data
       FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, ${params})`,
    args,
  );
  return rows.map((r) => ({ lsn: parseLsn(r.lsn), xid: Number(r.xid), data: r.data }));
}

/** Messages of one peek, in order, with the peek's lsn and xid columns. */
function decodeAll(changes: Change[], decoder: PgoutputDecoder) {
  return changes.map((c) => ({ ...c, msg: decoder.decode(c.data) }));
}

/**
 * Groups Begin..Commit into transactions, checking the framing on the way:
 * Begin's final LSN is Commit's LSN, both carry the same time, the xid is the
 * peek's, the peek's LSN of a Commit row is its end LSN, and commits ascend.
 * Messages outside a transaction (non-transactional logical messages) are
 * returned as they are.
 */
function transactions(decoded: ReturnType<typeof decodeAll>): (Txn | PgoutputMessage)[] {
  const out: (Txn | PgoutputMessage)[] = [];
  let open: Txn | undefined;
  let lastCommit = 0n;
  const now = pgNowMicros();
  for (const { msg, lsn, xid } of decoded) {
    if (msg.tag === "begin") {
      strictEqual(open, undefined, "Begin inside a transaction");
      strictEqual(msg.xid, xid, "Begin xid is the transaction's xid");
      ok(Math.abs(Number(now - msg.commitTime)) < 120e6, "commit time is about now");
      open = { begin: msg, commit: undefined as unknown as CommitMessage, changes: [] };
    } else if (msg.tag === "commit") {
      ok(open, "Commit outside a transaction");
      strictEqual(msg.flags, 0);
      strictEqual(msg.commitLsn, open.begin.finalLsn, "Begin.finalLsn = Commit.commitLsn");
      strictEqual(msg.commitTime, open.begin.commitTime);
      ok(msg.endLsn > msg.commitLsn, "end LSN after commit LSN");
      strictEqual(lsn, msg.endLsn, "peek reports the commit at its end LSN");
      ok(msg.commitLsn > lastCommit, "commit LSNs ascend");
      lastCommit = msg.endLsn;
      open.commit = msg;
      out.push(open);
      open = undefined;
    } else if (open) {
      open.changes.push(msg);
    } else {
      out.push(msg);
    }
  }
  strictEqual(open, undefined, "unterminated transaction");
  return out;
}

async function oids(sql: postgres.Sql, names: string[]): Promise<number[]> {
  const rows = await sql.unsafe(
    `SELECT n, to_regclass(n)::oid::int8 AS rel, to_regtype(n)::oid::int8 AS typ
       FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i) ORDER BY i`,
    [names],
  );
  return rows.map((r) => Number(r.rel ?? r.typ));
}

async function until<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await probe();
    if (got !== undefined) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function decodesPeekedChanges(cluster: TestCluster): Promise<void> {
  const major = cluster.major;
  const proto = protoVersionFor(major);
  const sql = cluster.sql(await cluster.createDatabase("pgo"));
  await sql.unsafe(`
    CREATE TYPE mood AS ENUM ('ok', 'sad');
    CREATE TABLE pk_t (id int PRIMARY KEY, name text, note varchar(20), m mood);
    CREATE TABLE full_t (a int, b text);
    ALTER TABLE full_t REPLICA IDENTITY FULL;
    CREATE TABLE toast_t (id int PRIMARY KEY, flag int, body text);
    ALTER TABLE toast_t ALTER COLUMN body SET STORAGE EXTERNAL;
    CREATE PUBLICATION pub FOR TABLE pk_t, full_t, toast_t;
  `);
  await sql.unsafe(`SELECT pg_create_logical_replication_slot('slot', 'pgoutput')`);
  const [pk, full, toast, mood] = await oids(sql, ["pk_t", "full_t", "toast_t", "mood"]);
  const big = "x".repeat(20_000);

  // Each statement is its own transaction (synchronous_commit is on in this cluster).
  await sql`INSERT INTO pk_t VALUES (1, 'a', 'x', 'ok'), (2, NULL, '', 'sad')`;
  await sql`UPDATE pk_t SET name = 'b' WHERE id = 1`;
  await sql`UPDATE pk_t SET id = 10 WHERE id = 1`;
  await sql`INSERT INTO full_t VALUES (1, 'x'), (1, 'x'), (2, NULL)`;
  await sql`UPDATE full_t SET b = 'y' WHERE a = 2`;
  await sql`UPDATE full_t SET b = 'z' WHERE a = 1`;
  await sql`DELETE FROM full_t WHERE a = 2`;
  await sql`INSERT INTO toast_t VALUES (1, 0, ${big})`;
  await sql`UPDATE toast_t SET flag = 1`;
  await sql`DELETE FROM pk_t WHERE id = 2`;
  await sql`TRUNCATE pk_t, full_t`;
  await sql`TRUNCATE toast_t RESTART IDENTITY CASCADE`;
  const messages = major >= 14; // pgoutput's "messages" option is PostgreSQL 14+
  if (messages) {
    // Non-transactional first: its WAL record is flushed by the next commit.
    await sql`SELECT pg_logical_emit_message(false, 'nt', 'bye')`;
    await sql`SELECT pg_logical_emit_message(true, 'pfx', 'hello')`;
  }

  const options: Record<string, string> = {
    proto_version: String(proto),
    publication_names: "pub",
    ...(messages ? { messages: "true" } : {}),
  };
  const decoded = decodeAll(
    await peek(sql, "slot", options),
    new PgoutputDecoder({
      protoVersion: proto,
    }),
  );
  const got = transactions(decoded);

  const type = { tag: "type", xid: undefined, typeOid: mood, schema: "public", name: "mood" };
  const pkRel: RelationMessage = {
    tag: "relation",
    xid: undefined,
    relationId: pk,
    schema: "public",
    name: "pk_t",
    replicaIdentity: "d",
    columns: [
      { isKey: true, name: "id", typeOid: 23, typeMod: -1 },
      { isKey: false, name: "name", typeOid: 25, typeMod: -1 },
      { isKey: false, name: "note", typeOid: 1043, typeMod: 24 },
      { isKey: false, name: "m", typeOid: mood, typeMod: -1 },
    ],
  };
  // With REPLICA IDENTITY FULL every column is flagged as part of the key.
  const fullRel: RelationMessage = {
    tag: "relation",
    xid: undefined,
    relationId: full,
    schema: "public",
    name: "full_t",
    replicaIdentity: "f",
    columns: [
      { isKey: true, name: "a", typeOid: 23, typeMod: -1 },
      { isKey: true, name: "b", typeOid: 25, typeMod: -1 },
    ],
  };
  const toastRel: RelationMessage = {
    tag: "relation",
    xid: undefined,
    relationId: toast,
    schema: "public",
    name: "toast_t",
    replicaIdentity: "d",
    columns: [
      { isKey: true, name: "id", typeOid: 23, typeMod: -1 },
      { isKey: false, name: "flag", typeOid: 23, typeMod: -1 },
      { isKey: false, name: "body", typeOid: 25, typeMod: -1 },
    ],
  };
  const ins = (relationId: number, newTuple: (string | null | undefined)[]) => ({
    tag: "insert",
    xid: undefined,
    relationId,
    newTuple,
  });
  const upd = (
    relationId: number,
    old: { key?: (string | null)[]; old?: (string | null)[] },
    newTuple: (string | null | undefined)[],
  ) => ({
    tag: "update",
    xid: undefined,
    relationId,
    keyTuple: old.key,
    oldTuple: old.old,
    newTuple,
  });
  const del = (relationId: number, old: { key?: (string | null)[]; old?: (string | null)[] }) => ({
    tag: "delete",
    xid: undefined,
    relationId,
    keyTuple: old.key,
    oldTuple: old.old,
  });

  const expected: unknown[][] = [
    [type, pkRel, ins(pk, ["1", "a", "x", "ok"]), ins(pk, ["2", null, "", "sad"])],
    // No key change: no old tuple at all.
    [upd(pk, {}, ["1", "b", "x", "ok"])],
    // Key change: 'K' carries the old key; the other columns are sent as NULL.
    [upd(pk, { key: ["1", null, null, null] }, ["10", "b", "x", "ok"])],
    [fullRel, ins(full, ["1", "x"]), ins(full, ["1", "x"]), ins(full, ["2", null])],
    // REPLICA IDENTITY FULL: 'O' carries the whole old row.
    [upd(full, { old: ["2", null] }, ["2", "y"])],
    [upd(full, { old: ["1", "x"] }, ["1", "z"]), upd(full, { old: ["1", "x"] }, ["1", "z"])],
    [del(full, { old: ["2", "y"] })],
    [toastRel, ins(toast, ["1", "0", big])],
    // The TOASTed body did not change: 'u', decoded as undefined.
    [upd(toast, {}, ["1", "1", undefined])],
    [del(pk, { key: ["2", null, null, null] })],
    // TRUNCATE gives the tables new files: their Relation (and Type) messages come again.
    [type, pkRel, fullRel, {
      tag: "truncate",
      xid: undefined,
      cascade: false,
      restartIdentity: false,
      relationIds: [pk, full],
    }],
    [toastRel, {
      tag: "truncate",
      xid: undefined,
      cascade: true,
      restartIdentity: true,
      relationIds: [toast],
    }],
  ];
  if (messages) {
    expected.push([{
      tag: "message",
      xid: undefined,
      transactional: true,
      lsn: undefined, // checked below
      prefix: "pfx",
      content: new TextEncoder().encode("hello"),
    }]);
  }
  const txns = got.filter((g): g is Txn => "begin" in g);
  const loose = got.filter((g): g is PgoutputMessage => !("begin" in g));
  const actual = txns.map((t) => t.changes);
  if (messages) {
    const m = actual.at(-1)![0];
    ok(m.tag === "message");
    const t = txns.at(-1)!;
    // The message's LSN is the end of its WAL record, here the commit record's start.
    ok(m.lsn > txns.at(-2)!.commit.endLsn && m.lsn <= t.commit.commitLsn, "message LSN in its txn");
    (expected.at(-1)![0] as { lsn: bigint }).lsn = m.lsn;
  }
  deepStrictEqual(actual, expected);

  // A non-transactional message comes on its own, outside Begin/Commit.
  deepStrictEqual(
    loose.map((m) => m.tag === "message" ? { ...m, lsn: 0n } : m),
    messages
      ? [{
        tag: "message",
        xid: undefined,
        transactional: false,
        lsn: 0n,
        prefix: "nt",
        content: new TextEncoder().encode("bye"),
      }]
      : [],
  );
}

/** Summary of a streamed transaction's segments: [xid of S, first flag, data message count]. */
type Segment = [number, boolean, number];

async function decodesStreamedTransactions(cluster: TestCluster): Promise<void> {
  const major = cluster.major;
  const proto = protoVersionFor(major);
  const sql = cluster.sql(await cluster.createDatabase("pgo_stream"));
  await sql.unsafe(`
    CREATE TABLE big (id int PRIMARY KEY, pad text);
    CREATE PUBLICATION pub FOR TABLE big;
  `);
  await sql.unsafe(`SELECT pg_create_logical_replication_slot('stream', 'pgoutput')`);
  const [rel] = await oids(sql, ["big"]);
  // 1. A committed 5,000-row transaction.
  await sql`INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, 5000) g`;
  // 2. A rolled-back one.
  await sql.begin(async (tx) => {
    await tx`INSERT INTO big SELECT g, 'gone' FROM generate_series(5001, 10000) g`;
    await tx`ROLLBACK`;
  });
  // 3. A committed one whose big subtransaction is rolled back.
  await sql.begin(async (tx) => {
    await tx`INSERT INTO big VALUES (0, 'first')`;
    await tx`SAVEPOINT s1`;
    await tx`INSERT INTO big SELECT g, 'sub' FROM generate_series(10001, 15000) g`;
    await tx`ROLLBACK TO SAVEPOINT s1`;
    await tx`INSERT INTO big VALUES (-1, 'last')`;
  });
  // 4. A small transaction, not streamed.
  await sql`INSERT INTO big VALUES (-2, 'small')`;

  const reserved = await sql.reserve();
  try {
    await reserved`SET logical_decoding_work_mem = '64kB'`;
    const modes: ("on" | "parallel")[] = major >= 16 ? ["on", "parallel"] : ["on"];
    for (const streaming of modes) {
      const decoder = new PgoutputDecoder({ protoVersion: proto, streaming });
      const decoded = decodeAll(
        await peek(reserved, "stream", {
          proto_version: String(proto),
          publication_names: "pub",
          streaming,
        }),
        decoder,
      );
      strictEqual(decoder.inStreamBlock, false);

      // Walk the stream: segments per top-level xid, data messages per xid.
      const segments: Segment[] = [];
      const ends: PgoutputMessage[] = [];
      const rowsBySubXid = new Map<number, string[]>();
      let inBlock: number | undefined;
      for (const { msg, xid: rowXid } of decoded) {
        if (msg.tag === "stream_start") {
          strictEqual(inBlock, undefined);
          inBlock = msg.xid;
          segments.push([msg.xid, msg.first, 0]);
        } else if (msg.tag === "stream_stop") {
          ok(inBlock !== undefined);
          inBlock = undefined;
        } else if (inBlock !== undefined) {
          ok("xid" in msg && msg.xid !== undefined, `${msg.tag} in a block carries an xid`);
          // The xid prefix is the (sub)transaction that made the change; the peek
          // reports the top-level one.
          strictEqual(rowXid, inBlock);
          segments.at(-1)![2]++;
          if (msg.tag === "relation") {
            deepStrictEqual(msg.columns.map((c) => c.name), ["id", "pad"]);
          } else {
            ok(msg.tag === "insert" && msg.relationId === rel);
            const list = rowsBySubXid.get(msg.xid!) ?? [];
            list.push(String(msg.newTuple[0]));
            rowsBySubXid.set(msg.xid!, list);
          }
        } else {
          ends.push(msg);
        }
      }
      strictEqual(inBlock, undefined);

      const tops = [...new Set(segments.map((s) => s[0]))];
      // On 18 a transaction that has already aborted when it is decoded is skipped
      // entirely, so the rolled-back transaction 2 never streams.
      const abortedTopStreams = major < 18;
      strictEqual(tops.length, abortedTopStreams ? 3 : 2);
      const [x1, x2, x3] = abortedTopStreams ? tops : [tops[0], undefined, tops[1]];
      for (const top of tops) {
        const mine = segments.filter((s) => s[0] === top);
        ok(mine.length >= 2, `transaction ${top} streamed in several blocks`);
        deepStrictEqual(mine.map((s) => s[1]), mine.map((_, i) => i === 0));
      }
      // Transaction 1: all 5,000 rows under its own xid, then Stream Commit.
      deepStrictEqual(
        rowsBySubXid.get(x1),
        Array.from({ length: 5000 }, (_, i) => String(i + 1)),
      );
      // Transaction 3: the subtransaction's rows carry the subtransaction's xid.
      const subXids = [...rowsBySubXid.keys()].filter((x) => x !== x1 && x !== x2 && x !== x3);
      const subOf = (first: string) => subXids.find((x) => rowsBySubXid.get(x)![0] === first)!;
      const sub = subOf("10001");
      // An aborted (sub)transaction's changes that were not streamed yet are dropped.
      const streamedPrefix = (xid: number, from: number) => {
        const rows = rowsBySubXid.get(xid)!;
        ok(rows.length > 0 && rows.length <= 5000);
        deepStrictEqual(rows, Array.from({ length: rows.length }, (_, i) => String(from + i)));
      };
      streamedPrefix(sub, 10001);
      deepStrictEqual(rowsBySubXid.get(x3), ["0"]);
      deepStrictEqual(rowsBySubXid.get(subOf("-1")), ["-1"]);
      if (x2 !== undefined) streamedPrefix(x2, 5001);

      const abortInfo = streaming === "parallel";
      const shape = ends.map((m) => {
        if (m.tag === "stream_commit") {
          ok(m.endLsn > m.commitLsn);
          return { tag: m.tag, xid: m.xid, flags: m.flags };
        }
        if (m.tag === "stream_abort") {
          strictEqual(typeof m.abortLsn, abortInfo ? "bigint" : "undefined");
          strictEqual(typeof m.abortTime, abortInfo ? "bigint" : "undefined");
          return { tag: m.tag, xid: m.xid, subXid: m.subXid };
        }
        if (m.tag === "begin" || m.tag === "commit") return { tag: m.tag };
        return m;
      });
      deepStrictEqual(shape, [
        { tag: "stream_commit", xid: x1, flags: 0 },
        ...(x2 !== undefined ? [{ tag: "stream_abort", xid: x2, subXid: x2 }] : []),
        { tag: "stream_abort", xid: x3, subXid: sub },
        { tag: "stream_commit", xid: x3, flags: 0 },
        { tag: "begin" },
        { tag: "insert", xid: undefined, relationId: rel, newTuple: ["-2", "small"] },
        { tag: "commit" },
      ]);
      const commits = ends.filter((m) => m.tag === "stream_commit" || m.tag === "commit");
      ok(commits.every((c, i) => i === 0 || c.commitLsn > commits[i - 1].commitLsn));
      if (abortInfo && x2 !== undefined) {
        const abort = decoded.find((d) => d.msg.tag === "stream_abort" && d.msg.xid === x2)!;
        ok(abort.msg.tag === "stream_abort");
        strictEqual(abort.msg.abortLsn, abort.lsn, "abort LSN is the abort record's");
      }
    }
  } finally {
    reserved.release();
  }
}

async function streamsLive(cluster: TestCluster): Promise<void> {
  const major = cluster.major;
  const proto = protoVersionFor(major);
  const db = await cluster.createDatabase("pgo_live");
  const sql = cluster.sql(db);
  await sql.unsafe(`
    CREATE TABLE live (id int PRIMARY KEY, v text);
    CREATE PUBLICATION pub FOR TABLE live;
  `);
  const [slot] =
    await sql`SELECT lsn::text FROM pg_create_logical_replication_slot('live', 'pgoutput')`;
  const consistentPoint = parseLsn(slot.lsn);
  const [rel] = await oids(sql, ["live"]);
  await sql`INSERT INTO live VALUES (1, 'one')`;
  const confirmed = async () => {
    const [row] = await sql`
      SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = 'live'`;
    return parseLsn(row.lsn);
  };

  // wal_sender_timeout 2s: a reply is requested after 1s without one.
  const repl = connect(cluster.url(db), {
    replication: true,
    params: { wal_sender_timeout: "2s" },
  });
  const frames: CopyDataFrame[] = [];
  const errors: unknown[] = [];
  const decoder = new PgoutputDecoder({ protoVersion: proto });
  const decoded: { frame: CopyDataFrame & { kind: "xlog" }; msg: PgoutputMessage }[] = [];
  let acked = 0n;
  try {
    const stream = await repl.unsafe(
      startReplicationCommand("live", 0n, { protoVersion: proto, publication: "pub" }),
    ).writable();
    stream.on("error", (e: unknown) => errors.push(e));
    stream.on("data", (chunk: Uint8Array) => {
      const frame = parseCopyData(chunk);
      frames.push(frame);
      if (frame.kind === "xlog") decoded.push({ frame, msg: decoder.decode(frame.payload) });
      else if (frame.replyRequested) stream.write(encodeStandbyStatus(acked));
    });
    const commits = () => decoded.filter((d) => d.msg.tag === "commit");
    await until("the first commit", () => commits()[0]);
    await sql`INSERT INTO live VALUES (2, 'two')`;
    await until("the second commit", () => commits()[1]);

    const now = pgNowMicros();
    deepStrictEqual(decoded.map((d) => d.msg.tag), [
      "begin",
      "relation",
      "insert",
      "commit",
      "begin",
      "insert",
      "commit",
    ]);
    const inserts = decoded.filter((d) => d.msg.tag === "insert").map((d) => d.msg);
    deepStrictEqual(inserts, [
      { tag: "insert", xid: undefined, relationId: rel, newTuple: ["1", "one"] },
      { tag: "insert", xid: undefined, relationId: rel, newTuple: ["2", "two"] },
    ]);
    for (const { frame, msg } of decoded) {
      ok(frame.walEnd >= frame.walStart);
      ok(Math.abs(Number(now - frame.sendTime)) < 120e6, "sendTime is about now");
      // A logical walsender puts the commit's end LSN in the frame header.
      if (msg.tag === "commit") strictEqual(frame.walStart, msg.endLsn);
      if (msg.tag === "insert") ok(frame.walStart >= consistentPoint);
    }
    const [c1, c2] = commits().map((d) => d.msg as CommitMessage);
    ok(c2.commitLsn > c1.endLsn);
    // Keepalives report the server's WAL end, which reaches past what was sent.
    await until(
      "a keepalive past the second commit",
      () => frames.find((f) => f.kind === "keepalive" && f.walEnd >= c2.endLsn),
    );

    // Nothing acknowledged yet: the slot stays where it was created.
    strictEqual(await confirmed(), consistentPoint);
    acked = c1.endLsn;
    stream.write(encodeStandbyStatus(acked));
    await until(
      "confirmed_flush_lsn at the first commit",
      async () => (await confirmed()) === c1.endLsn ? true : undefined,
    );
    // Acknowledge with a reply request: the server answers with a keepalive.
    const seen = frames.length;
    acked = c2.endLsn;
    stream.write(encodeStandbyStatus(acked, true));
    await until(
      "the keepalive answering our request",
      () => frames.slice(seen).find((f) => f.kind === "keepalive"),
    );
    await until(
      "confirmed_flush_lsn at the second commit",
      async () => (await confirmed()) === c2.endLsn ? true : undefined,
    );
    // Left alone, the server asks for a reply within wal_sender_timeout/2.
    const asked = frames.length;
    await until(
      "a keepalive that requests a reply",
      () => frames.slice(asked).find((f) => f.kind === "keepalive" && f.replyRequested),
    );

    let ended = false;
    stream.once("end", () => ended = true);
    stream.end(); // CopyDone: the server ends the stream too
    await until("the end of the stream", () => ended || undefined);
    deepStrictEqual(errors, []);
  } finally {
    await repl.end({ timeout: 1 });
  }
}

for (const major of testVersions()) {
  Deno.test(`pgoutput decoding on PostgreSQL ${major}`, async (t) => {
    await using cluster = await startCluster({ major, settings: { synchronous_commit: "on" } });
    await t.step("peeked changes decode to the exact structs", () => decodesPeekedChanges(cluster));
    await t.step({
      name: "streamed transactions: S/E blocks with xids, stream commit and abort",
      ignore: major < 14,
      fn: () => decodesStreamedTransactions(cluster),
    });
    await t.step(
      "live START_REPLICATION: frames, keepalives, standby status",
      () => streamsLive(cluster),
    );
  });
}
