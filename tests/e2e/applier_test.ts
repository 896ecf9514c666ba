/**
 * The applier with no source server: only a destination cluster, target
 * tables, and decoded pgoutput messages built here, fed in the order the
 * reader hands them over (`feed` stands in for lib/source/reader.ts, with
 * every streamed transaction in the mode "apply-as-it-arrives"). Checked as
 * a user would: the destination's rows and `kvsz.progress`.
 */
import assertModule from "node:assert/strict";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { connect, type Sql } from "../../lib/pg/connect.ts";
import { formatLsn } from "../../lib/pg/lsn.ts";
import { Applier } from "../../lib/apply/applier.ts";
import { WriterPool } from "../../lib/apply/writer_pool.ts";
import { log } from "../../lib/log.ts";
import { RouteTable } from "../../lib/apply/routes.ts";
import { ensureKvszSchema, readProgress } from "../../lib/apply/progress.ts";
import type { TableMapping } from "../../lib/config/types.ts";
import type {
  PgoutputMessage,
  RelationMessage,
  StreamCommitMessage,
  Tuple,
} from "../../lib/source/messages.ts";

const assertEquals: (actual: unknown, expected: unknown, message?: string) => void =
  assertModule.deepStrictEqual;

const DATABASE = "src";
const SID = "1";
/** 2024-01-01 00:00:00 UTC in µs since 2000-01-01. */
const COMMIT_TIME = 757_382_400_000_000n;

const ITEMS = 16001;
const OTHER = 16002;

/** The Relation message of `public.<name>` (id int key, then text columns). */
function relation(relationId: number, name: string, textColumns: string[]): RelationMessage {
  return {
    tag: "relation",
    relationId,
    schema: "public",
    name,
    replicaIdentity: "d",
    columns: [
      { isKey: true, name: "id", typeOid: 23, typeMod: -1 },
      ...textColumns.map((c) => ({ isKey: false, name: c, typeOid: 25, typeMod: -1 })),
    ],
  };
}

const begin = (lsn: bigint, xid = 1): PgoutputMessage => ({
  tag: "begin",
  finalLsn: lsn,
  commitTime: COMMIT_TIME,
  xid,
});
const commit = (lsn: bigint): PgoutputMessage => ({
  tag: "commit",
  flags: 0,
  commitLsn: lsn,
  endLsn: lsn + 8n,
  commitTime: COMMIT_TIME,
});
const insert = (relationId: number, ...newTuple: Tuple): PgoutputMessage => ({
  tag: "insert",
  relationId,
  newTuple,
});

/**
 * Hands `messages` to the applier as the reader does: data messages to
 * `handle`, a streamed transaction's messages to its streamed side (applied
 * as it arrives), waiting whenever it asks to.
 */
async function feed(applier: Applier, messages: PgoutputMessage[]): Promise<void> {
  for (const msg of messages) {
    let wait: void | Promise<void> = undefined;
    switch (msg.tag) {
      case "stream_start":
        wait = msg.first ? applier.beginStreamed(msg.xid) : applier.resumeStreamed();
        break;
      case "stream_stop":
        wait = applier.pauseStreamed();
        break;
      case "stream_abort":
        if (!applier.abortStreamed()) throw new Error(`the applier cannot undo ${msg.xid} alone`);
        break;
      case "stream_commit":
        wait = applier.commitStreamed(msg);
        break;
      default:
        wait = applier.handle(msg, 0);
    }
    if (wait) await wait;
  }
  applier.drained();
}

/** A destination with `items` and `other`, and what an applier needs to write into it. */
async function destination(cluster: TestCluster) {
  const db = await cluster.createDatabase("dst");
  const sql = cluster.sql(db);
  await sql.unsafe(`CREATE TABLE items (id int PRIMARY KEY, name text)`);
  await sql.unsafe(`CREATE TABLE other (id int PRIMARY KEY, v text)`);
  await ensureKvszSchema(sql);
  const mapping = (name: string): TableMapping => ({
    source: name,
    sourceSchema: "public",
    sourceName: name,
    target: name,
    mode: "clone",
    onColumnDrift: "continue",
  });
  const mappings = new Map([["items", mapping("items")], ["other", mapping("other")]]);
  /** Connections the appliers opened, closed by `close`. */
  const opened: Sql[] = [];
  const writers = new WriterPool({ url: cluster.url(db), size: 1, log: log("apply") });
  return {
    sql,
    /** A new applier resuming from the stored progress, as a pipeline starts one. */
    async applier(opts: { streamWaitMs?: number } = {}): Promise<Applier> {
      const conn = connect(cluster.url(db), { max: 1 });
      opened.push(conn);
      const routes = new RouteTable(conn, {
        destSchema: "public",
        mappingOf: (schema, name) => schema === "public" ? mappings.get(name) : undefined,
        database: DATABASE,
        sid: SID,
        synced: new Map(),
      });
      return new Applier(writers, routes, await readProgress(sql, DATABASE, SID), {
        database: DATABASE,
        sid: SID,
        batchSize: 1000,
        commitIntervalMs: 60_000, // commits come from `drained` and `close`, not the timer
        streamWaitMs: opts.streamWaitMs,
      });
    },
    async rows(table: string): Promise<string[]> {
      const rows = await sql.unsafe(`SELECT id, ${table === "items" ? "name" : "v"} AS value
                                       FROM ${table} ORDER BY id`);
      return rows.map((r) => `${r.id}:${r.value}`);
    },
    /** The stored progress: commit and end LSN, anomalies. */
    async progress(): Promise<Record<string, unknown>> {
      const [p] = await sql.unsafe(
        `SELECT commit_lsn::text AS commit, end_lsn::text AS end, anomalies::int AS anomalies
           FROM kvsz.progress WHERE database = $1 AND sid = $2`,
        [DATABASE, SID],
      );
      return { ...p };
    },
    async close(): Promise<void> {
      await Promise.all([...opened.map((c) => c.end({ timeout: 1 })), writers.close()]);
    },
  };
}

clusterSuite("applier", {
  "transactions are applied whole, progress is the last commit, a restart skips what is committed":
    async (cluster) => {
      const dst = await destination(cluster);
      try {
        const first = [
          begin(0x100n),
          relation(ITEMS, "items", ["name"]),
          relation(OTHER, "other", ["v"]),
          insert(ITEMS, "1", "a"),
          insert(ITEMS, "2", "b"),
          insert(ITEMS, "3", "c"),
          insert(OTHER, "1", "x"),
          commit(0x100n),
        ];
        let applier = await dst.applier();
        await feed(applier, [
          ...first,
          begin(0x200n),
          { tag: "update", relationId: ITEMS, newTuple: ["2", "b2"] },
          { tag: "update", relationId: ITEMS, keyTuple: ["3", null], newTuple: ["30", "c"] },
          { tag: "delete", relationId: ITEMS, keyTuple: ["1", null] },
          commit(0x200n),
          begin(0x300n),
          {
            tag: "truncate",
            cascade: false,
            restartIdentity: false,
            relationIds: [OTHER],
          },
          insert(ITEMS, "4", "d"),
          commit(0x300n),
        ]);
        await applier.close();
        assertEquals(await dst.rows("items"), ["2:b2", "4:d", "30:c"]);
        assertEquals(await dst.rows("other"), []);
        const stored = await dst.progress();
        assertEquals([stored.commit, stored.end, stored.anomalies], ["0/300", "0/308", 0]);

        // A restart: the slot sends again from before what is committed; only the new commits apply.
        applier = await dst.applier();
        assertEquals(formatLsn(applier.safeLsn), "0/308");
        await feed(applier, [...first, begin(0x400n), insert(ITEMS, "5", "e"), commit(0x400n)]);
        await applier.close();
        assertEquals(await dst.rows("items"), ["2:b2", "4:d", "5:e", "30:c"]);
        assertEquals(await dst.rows("other"), []);
        const p = await dst.progress();
        assertEquals([p.commit, p.end, p.anomalies], ["0/400", "0/408", 0]);
      } finally {
        await dst.close();
      }
    },

  "a streamed transaction commits at its Stream Commit with those committed meanwhile; an aborted one leaves nothing":
    async (cluster) => {
      const dst = await destination(cluster);
      try {
        const applier = await dst.applier({ streamWaitMs: 600_000 });
        const streamCommit: StreamCommitMessage = {
          tag: "stream_commit",
          xid: 500,
          flags: 0,
          commitLsn: 0x600n,
          endLsn: 0x608n,
          commitTime: COMMIT_TIME,
        };
        await feed(applier, [
          begin(0x100n),
          relation(ITEMS, "items", ["name"]),
          insert(ITEMS, "1", "before"),
          commit(0x100n),
          { tag: "stream_start", xid: 500, first: true },
          { ...relation(ITEMS, "items", ["name"]), xid: 500 },
          { ...insert(ITEMS, "10", "s"), xid: 500 } as PgoutputMessage,
          { ...insert(ITEMS, "11", "s"), xid: 500 } as PgoutputMessage,
          { tag: "stream_stop" },
          // Committed while the streamed one runs: written into its destination transaction.
          begin(0x500n, 2),
          insert(ITEMS, "20", "meanwhile"),
          commit(0x500n),
          { tag: "stream_start", xid: 500, first: false },
          { tag: "update", xid: 500, relationId: ITEMS, newTuple: ["10", "s2"] },
          { tag: "stream_stop" },
          streamCommit,
          // Rolled back at the source: nothing of it is written, before or after.
          { tag: "stream_start", xid: 700, first: true },
          { ...insert(ITEMS, "70", "aborted"), xid: 700 } as PgoutputMessage,
          { tag: "stream_stop" },
          { tag: "stream_abort", xid: 700, subXid: 700 },
          begin(0x800n, 3),
          insert(ITEMS, "80", "after"),
          commit(0x800n),
        ]);
        await applier.close();
        assertEquals(await dst.rows("items"), [
          "1:before",
          "10:s2",
          "11:s",
          "20:meanwhile",
          "80:after",
        ]);
        const p = await dst.progress();
        assertEquals([p.commit, p.end, p.anomalies], ["0/800", "0/808", 0]);
      } finally {
        await dst.close();
      }
    },

  "a clean stop commits what is pending and records the last idle position at once; one it cannot record stays unconfirmed":
    async (cluster) => {
      const dst = await destination(cluster);
      try {
        let applier = await dst.applier();
        await feed(applier, [
          begin(0x100n),
          relation(ITEMS, "items", ["name"]),
          insert(ITEMS, "1", "a"),
          commit(0x100n),
        ]);
        await applier.settle(); // the pending commit, written just now
        assertEquals(formatLsn(applier.safeLsn), "0/108");
        // WAL with nothing for this source: recorded only seconds after its last write, but
        // a stop records it at once, before the reader's last status.
        applier.noteIdlePosition(0x500n);
        await applier.settle();
        assertEquals(formatLsn(applier.safeLsn), "0/500");
        assertEquals((await dst.progress()).end, "0/500");
        await applier.close();

        // The destination cannot record it: left unconfirmed, and the stop is still clean.
        applier = await dst.applier();
        await dst.sql.unsafe(`ALTER TABLE kvsz.progress RENAME TO progress_away`);
        try {
          applier.noteIdlePosition(0x600n);
          await applier.settle();
          assertEquals(formatLsn(applier.safeLsn), "0/500");
          await applier.close();
        } finally {
          await dst.sql.unsafe(`ALTER TABLE kvsz.progress_away RENAME TO progress`);
        }
        assertEquals((await dst.progress()).end, "0/500");
        assertEquals(await dst.rows("items"), ["1:a"]);
      } finally {
        await dst.close();
      }
    },
});
