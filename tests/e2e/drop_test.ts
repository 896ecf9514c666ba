/**
 * `kvsz drop` on a real server: it drops exactly the slot and publication
 * kvsz named for each configured source (an unrelated slot and publication,
 * and a kvsz-named slot of a source the config does not have, survive),
 * refuses while the slot is streamed (naming the process), wants --yes
 * without a terminal, filters by --database and --sid, and with --progress
 * forgets the source in the destination.
 */
import assert from "node:assert/strict";
import { stringify } from "yaml";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { type CliResult, kvszArgs, runCli, tempConfig } from "../support/run_cli.ts";
import { waitFor } from "../support/kvsz.ts";
import { connect } from "../../lib/pg/connect.ts";
import { kvszObjectName } from "../../lib/pg/identifiers.ts";
import { ensureKvszSchema } from "../../lib/apply/progress.ts";
import { claimSource } from "../../lib/apply/ownership.ts";
import { protoVersionFor, startReplicationCommand } from "../../lib/source/replication_protocol.ts";
import { partitionsPublicationName } from "../../lib/source/publication.ts";

interface Setup {
  srcDb: string;
  dstDb: string;
  /** kvsz's slot and publication name for sid 1 (configured). */
  kvsz1: string;
  /** kvsz's name for sid 2 (configured, nothing created). */
  kvsz2: string;
  /** A kvsz-named slot of sid 9, which the config does not have. */
  kvsz9: string;
  /** Runs `kvsz drop --config <file> ...args`. */
  drop(args: string[]): Promise<CliResult>;
  /** Runs `kvsz drop --config <file>` on a terminal (util-linux `script`), typing `answer`. */
  dropOnTerminal(answer: string): Promise<CliResult>;
  /** Slot and publication names on the source, sorted. */
  objects(): Promise<{ slots: string[]; publications: string[] }>;
}

async function setup(c: TestCluster): Promise<Setup> {
  const srcDb = await c.createDatabase("dsrc");
  const dstDb = await c.createDatabase("ddst");
  const kvsz1 = kvszObjectName(srcDb, "1");
  const kvsz2 = kvszObjectName(srcDb, "2");
  const kvsz9 = kvszObjectName(srcDb, "9");
  const other = `other_${srcDb}`;
  const src = c.sql(srcDb);
  await src.unsafe(`CREATE TABLE t1 (id int PRIMARY KEY, v text)`);
  await src.unsafe(`CREATE PUBLICATION ${kvsz1} FOR TABLE t1`);
  await src.unsafe(`CREATE PUBLICATION ${other} FOR TABLE t1`);
  for (const slot of [kvsz1, kvsz9, other]) {
    await src.unsafe(`SELECT pg_create_logical_replication_slot('${slot}', 'pgoutput')`);
  }
  const config = {
    destination: { url: c.url(dstDb) },
    databases: [{
      database: srcDb,
      urls: [{ url: c.url(srcDb), sid: "1" }, { url: c.url(srcDb), sid: "2" }],
      tables: { t1: null },
    }],
  };
  return {
    srcDb,
    dstDb,
    kvsz1,
    kvsz2,
    kvsz9,
    async drop(args) {
      await using file = await tempConfig(stringify(config));
      const r = await runCli(["drop", "--config", file.path, ...args]);
      assert.ok(!r.output.includes(c.server.password), `password printed:\n${r.output}`);
      return r;
    },
    async dropOnTerminal(answer) {
      await using file = await tempConfig(stringify(config));
      const command = [Deno.execPath(), ...kvszArgs(["drop", "--config", file.path])].map((a) =>
        `'${a.replaceAll("'", `'\\''`)}'`
      ).join(" ");
      const child = new Deno.Command("script", {
        args: ["-qec", command, "/dev/null"],
        env: { NO_COLOR: "1" },
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(answer + "\n"));
      await writer.close();
      const out = await child.output();
      const stdout = new TextDecoder().decode(out.stdout);
      const stderr = new TextDecoder().decode(out.stderr);
      return { code: out.code, stdout, stderr, output: stdout + stderr };
    },
    async objects() {
      const slots = await src.unsafe(
        `SELECT slot_name AS n FROM pg_replication_slots WHERE database = $1 ORDER BY 1`,
        [srcDb],
      );
      const pubs = await src.unsafe(`SELECT pubname AS n FROM pg_publication ORDER BY 1`);
      return { slots: slots.map((r) => r.n), publications: pubs.map((r) => r.n) };
    },
  };
}

function hasScript(): boolean {
  try {
    return new Deno.Command("script", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

clusterSuite("kvsz drop", {
  "without a terminal and without --yes: exit 2, nothing dropped": async (c) => {
    const s = await setup(c);
    const before = await s.objects();
    const r = await s.drop([]);
    assert.equal(r.code, 2, r.output);
    assert.match(r.stderr, /not a terminal.*--yes/);
    assert.deepEqual(await s.objects(), before);
  },

  "refuses while the slot is streamed, naming the process; nothing of that source dropped": async (
    c,
  ) => {
    const s = await setup(c);
    const before = await s.objects();
    const repl = connect(c.url(s.srcDb), { replication: true });
    const src = c.sql(s.srcDb);
    try {
      // deno-lint-ignore no-explicit-any
      const stream: any = await repl.unsafe(
        startReplicationCommand(s.kvsz1, 0n, {
          protoVersion: protoVersionFor(c.major),
          publication: s.kvsz1,
        }),
      ).writable();
      stream.on("error", () => {});
      stream.on("data", () => {});
      let pid = 0;
      await waitFor(async () => {
        const [row] = await src.unsafe(
          `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1 AND active`,
          [s.kvsz1],
        );
        pid = row?.active_pid ?? 0;
        return pid > 0;
      }, { what: "the slot to be active" });

      const r = await s.drop(["--yes"]);
      assert.equal(r.code, 1, r.output);
      assert.match(
        r.stdout,
        new RegExp(`^FAIL +slot ${s.kvsz1} on source ${s.srcDb} sid 1 .*process ${pid}`, "m"),
      );
      assert.deepEqual(await s.objects(), before, "nothing of sid 1 dropped");
      // The other configured source was handled (it has nothing to drop).
      assert.match(r.stdout, new RegExp(`^not found slot ${s.kvsz2} `, "m"));
    } finally {
      await repl.end({ timeout: 1 }).catch(() => {});
    }
    await waitFor(async () => {
      const [row] = await src.unsafe(
        `SELECT active FROM pg_replication_slots WHERE slot_name = $1`,
        [s.kvsz1],
      );
      return row?.active === false;
    }, { what: "the slot to be released" });
    const r = await s.drop(["--yes"]);
    assert.equal(r.code, 0, r.output);
  },

  "--yes drops exactly kvsz's slot and publications of the configured sources": async (c) => {
    const s = await setup(c);
    // The partitions publication kvsz makes for partitions_regex on a partitioned table.
    const partitions = partitionsPublicationName(s.kvsz1);
    await c.sql(s.srcDb).unsafe(`CREATE PUBLICATION ${partitions} FOR TABLE t1`);
    const r = await s.drop(["--yes"]);
    assert.equal(r.code, 0, r.output);
    const lines = r.stdout.trim().split("\n").map((l) => l.replace(/ on source .*$/, ""));
    assert.deepEqual(lines, [
      `dropped   slot ${s.kvsz1}`,
      `dropped   publication ${s.kvsz1}`,
      `dropped   publication ${partitions}`,
      `not found slot ${s.kvsz2}`,
      `not found publication ${s.kvsz2}`,
    ]);
    assert.deepEqual(await s.objects(), {
      slots: [`${s.kvsz9}`, `other_${s.srcDb}`].sort(),
      publications: [`other_${s.srcDb}`],
    });
    // Again: nothing left to drop, still success.
    const again = await s.drop(["-y"]);
    assert.equal(again.code, 0, again.output);
    assert.equal(again.stdout.match(/^not found /gm)?.length, 4, again.stdout);
  },

  "on a terminal: lists what it will drop and asks; only yes drops": async (c) => {
    if (!hasScript()) {
      console.warn("util-linux `script` not installed: terminal confirmation not exercised");
      return;
    }
    const s = await setup(c);
    const before = await s.objects();
    const no = await s.dropOnTerminal("n");
    assert.equal(no.code, 1, no.output);
    assert.match(no.output, /kvsz drop will remove:/);
    assert.match(no.output, new RegExp(`slot ${s.kvsz1} and publication ${s.kvsz1} on source`));
    assert.ok(!no.output.includes(s.kvsz2), "nothing to drop for sid 2 is not listed");
    assert.match(no.output, /Drop them\? \[y\/N\]/);
    assert.match(no.output, /not confirmed: nothing dropped/);
    assert.deepEqual(await s.objects(), before);

    const yes = await s.dropOnTerminal("y");
    assert.equal(yes.code, 0, yes.output);
    assert.match(yes.output, new RegExp(`dropped   slot ${s.kvsz1} `));
    assert.ok(!(await s.objects()).slots.includes(s.kvsz1));
  },

  "--database and --sid select sources; a filter matching nothing exits 2": async (c) => {
    const s = await setup(c);
    const none = await s.drop(["--yes", "--sid", "7"]);
    assert.equal(none.code, 2, none.output);
    assert.match(
      none.stderr,
      new RegExp(`no configured source matches --sid 7 .*${s.srcDb} sid 1`),
    );
    const other = await s.drop(["--yes", "--database", "elsewhere"]);
    assert.equal(other.code, 2, other.output);

    const r = await s.drop(["--yes", "--database", s.srcDb, "--sid", "2"]);
    assert.equal(r.code, 0, r.output);
    assert.ok(!r.stdout.includes(s.kvsz1), r.stdout);
    assert.ok((await s.objects()).slots.includes(s.kvsz1), "sid 1 untouched");
  },

  "--progress deletes the source's progress, synced tables and claim in the destination": async (
    c,
  ) => {
    const s = await setup(c);
    const dst = connect(c.url(s.dstDb));
    try {
      await ensureKvszSchema(dst);
      for (const sid of ["1", "2", "3"]) {
        await dst.unsafe(
          `INSERT INTO kvsz.progress (database, sid, commit_lsn, end_lsn) VALUES ($1, $2, '0/10', '0/20')`,
          [s.srcDb, sid],
        );
        await dst.unsafe(
          `INSERT INTO kvsz.synced_tables (database, sid, source_table, target, synced_lsn)
           VALUES ($1, $2, 't1', 't1', '0/5')`,
          [s.srcDb, sid],
        );
        await claimSource(dst, { database: s.srcDb, sid }, { token: sid, owner: "a kvsz" });
      }
      const r = await s.drop(["--yes", "--sid", "1", "--progress"]);
      assert.equal(r.code, 0, r.output);
      assert.match(
        r.stdout,
        new RegExp(
          `^deleted   progress of ${s.srcDb} sid 1 in destination .*\\(1 progress row, 1 synced table\\)`,
          "m",
        ),
      );
      const left = async (table: string) =>
        (await dst.unsafe(`SELECT sid FROM kvsz.${table} WHERE database = $1 ORDER BY 1`, [
          s.srcDb,
        ])).map((row) => row.sid);
      assert.deepEqual(await left("progress"), ["2", "3"]);
      assert.deepEqual(await left("synced_tables"), ["2", "3"]);
      assert.deepEqual(await left("owners"), ["2", "3"]);
    } finally {
      await dst.end({ timeout: 1 });
    }
  },
});
