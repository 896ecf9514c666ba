/**
 * Values the destination refuses (out of range, too long, not valid input for
 * the type, NULL into NOT NULL, a failed CHECK): the error names the
 * destination table, the column, the row's key and the source LSN, with the
 * fix; kvsz retries with backoff and skips nothing, so once the target is
 * fixed the row arrives, whole (never cut to the column's length). Other
 * sources keep streaming meanwhile. A refused initial copy names the tables,
 * the column and the line.
 */
import assert from "node:assert/strict";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitForEqualRows, writeConfig } from "../support/kvsz.ts";
import { formatLsn, parseLsn } from "../../lib/pg/lsn.ts";
import type { Sql } from "../../lib/pg/connect.ts";

/** A config streaming table `t` of each source database (sid 1, 2, …) into `dstDb`'s table of the same index. */
function configFor(c: TestCluster, srcDbs: string[], dstDb: string, tables: string[]) {
  return writeConfig({
    destination: { url: c.url(dstDb) },
    databases: srcDbs.map((db, i) => ({
      database: db,
      urls: [{ url: c.url(db), sid: String(i + 1) }],
      tables: { t: { target: tables[i] } },
    })),
    apply: { commit_interval_ms: 50 },
    metrics: { listen: "" },
    log: { level: "info", format: "text" },
  });
}

/** One kind of refused value: the target's column, how the source drifts, the bad row, the fix. */
interface Kind {
  /** Target table (one per kind, each fed by its own source). */
  table: string;
  /** Column `v` at the source and at the destination when kvsz starts (they agree). */
  column: string;
  /** What the source changes while kvsz streams (the destination is not told). */
  drift: string;
  /** Value of `v` in the refused row (id 2). */
  value: string;
  /** Value of `v` in the rows before and after it (ids 1 and 3). */
  good: string;
  /** What the error says, after the table name. */
  says: RegExp;
  /** Where it says the value was refused. */
  at: string;
  /** The fix it proposes. */
  fix: RegExp;
  /** What the destination's owner runs to take the row. */
  repair: string;
}

const KINDS: Kind[] = [
  {
    table: "range",
    column: "v integer",
    drift: "ALTER TABLE t ALTER v TYPE bigint",
    value: "5000000000",
    good: "1",
    says: /value "5000000000" is out of range for type integer/,
    at: "column v",
    fix: /widen public\.range\.v \(ALTER TABLE public\.range ALTER COLUMN "v" TYPE …\)/,
    repair: "ALTER TABLE range ALTER v TYPE bigint",
  },
  {
    table: "amount",
    column: "v numeric(5,2)",
    drift: "ALTER TABLE t ALTER v TYPE numeric(12,2)",
    value: "12345.67",
    good: "1.5",
    says: /numeric field overflow \(A field with precision 5, scale 2 must round/,
    at: "column v",
    fix: /widen public\.amount\.v/,
    repair: "ALTER TABLE amount ALTER v TYPE numeric(12,2)",
  },
  {
    table: "long",
    column: "v varchar(5)",
    drift: "ALTER TABLE t ALTER v TYPE varchar(20)",
    value: "'abcdefghij'",
    good: "'abc'",
    says: /value too long for type character varying\(5\)/,
    at: "column v",
    fix: /lengthen public\.long\.v/,
    repair: "ALTER TABLE long ALTER v TYPE varchar(20)",
  },
  {
    table: "num",
    column: "v integer",
    drift: "ALTER TABLE t ALTER v TYPE text",
    value: "'12 apples'",
    good: "'12'",
    says: /invalid input syntax for type integer: "12 apples"/,
    at: "column v",
    fix: /give public\.num\.v the source column's type/,
    repair: "ALTER TABLE num ALTER v TYPE text",
  },
  {
    table: "day",
    column: "v date",
    drift: "ALTER TABLE t ALTER v TYPE text",
    value: "'2024-02-30'",
    good: "'2024-02-29'",
    says: /date\/time field value out of range: "2024-02-30"/,
    at: "column v",
    fix: /give public\.day\.v the source column's type/,
    repair: "ALTER TABLE day ALTER v TYPE text",
  },
  {
    table: "required",
    column: "v integer NOT NULL",
    drift: "ALTER TABLE t ALTER v DROP NOT NULL",
    value: "NULL",
    good: "1",
    says: /null value in column "v" of relation "required" violates not-null constraint/,
    at: "column v",
    fix:
      /let public\.required\.v be NULL \(ALTER TABLE public\.required ALTER COLUMN "v" DROP NOT NULL\)/,
    repair: "ALTER TABLE required ALTER v DROP NOT NULL",
  },
  {
    table: "checked",
    column: "v integer CONSTRAINT positive CHECK (v > 0)",
    drift: "ALTER TABLE t DROP CONSTRAINT positive",
    value: "-1",
    good: "1",
    says: /new row for relation "checked" violates check constraint "positive"/,
    at: 'check constraint "positive"',
    fix: /relax or drop check constraint "positive" of public\.checked/,
    repair: "ALTER TABLE checked DROP CONSTRAINT positive",
  },
];

/** The source's current WAL insert position (written or not: commits are asynchronous). */
async function walLsn(src: Sql): Promise<bigint> {
  const [row] = await src.unsafe(`SELECT pg_current_wal_insert_lsn()::text AS lsn`);
  return parseLsn(row.lsn);
}

clusterSuite("kvsz run: values the destination refuses", {
  "each refused value names table, column, key and LSN, is retried, and arrives once the target takes it; other sources stream on":
    async (c) => {
      const dstDb = await c.createDatabase("dst");
      const dst = c.sql(dstDb);
      const sources: { db: string; sql: Sql }[] = [];
      for (const kind of [...KINDS, null]) {
        const db = await c.createDatabase("src");
        const column = kind?.column ?? "v text";
        await c.sql(db).unsafe(`CREATE TABLE t (id int PRIMARY KEY, w text, ${column})`);
        await dst.unsafe(
          `CREATE TABLE ${kind?.table ?? "fine"} (id int PRIMARY KEY, w text, ${column})`,
        );
        sources.push({ db, sql: c.sql(db) });
      }
      const tables = [...KINDS.map((k) => k.table), "fine"];
      const config = await configFor(c, sources.map((s) => s.db), dstDb, tables);
      await using kvsz = KvszProcess.start(["run", "--config", config]);
      for (const s of sources) {
        await kvsz.waitForOutput(new RegExp(`streaming from .* database=${s.db} `));
      }

      // A good row, then the refused one with another good one after it, in their own transactions.
      const lsns: { before: bigint; after: bigint }[] = [];
      for (const [i, kind] of KINDS.entries()) {
        const src = sources[i].sql;
        await src.unsafe(kind.drift);
        await src.unsafe(`INSERT INTO t VALUES (1, 'before', ${kind.good})`);
        const before = await walLsn(src);
        await src.unsafe(`INSERT INTO t VALUES (2, 'refused', ${kind.value})`);
        lsns.push({ before, after: await walLsn(src) });
        await src.unsafe(`INSERT INTO t VALUES (3, 'after', ${kind.good})`);
      }
      for (const [i, kind] of KINDS.entries()) {
        const db = sources[i].db;
        // Twice: the error is retried (with backoff), not skipped.
        await kvsz.waitForOutput(
          new RegExp(
            `(ERR source: public\\.${kind.table}: .*retrying in .*database=${db} .*){2}`,
            "s",
          ),
        );
        const line = kvsz.output.split("\n").find((l) =>
          l.includes(`ERR source: public.${kind.table}: `) && l.includes(`database=${db} `)
        )!;
        assert.match(line, kind.says);
        assert.ok(
          line.includes(`; ${kind.at}, key (id)=(2), source transaction committed at `),
          line,
        );
        assert.match(line, kind.fix);
        assert.match(line, /; kvsz retries it, skipping nothing; retrying in \d+ s/);
        const lsn = parseLsn(/committed at (\S+?):/.exec(line)![1]);
        assert.ok(
          lsn > lsns[i].before && lsn <= lsns[i].after,
          `${line}\n${formatLsn(lsns[i].before)} – ${formatLsn(lsns[i].after)}`,
        );
        // Found by applying the batch again one change at a time.
        assert.match(kvsz.output, new RegExp(`public\\.${kind.table}: .*one change at a time`));
      }

      // Meanwhile the other source streams on.
      const fine = sources[KINDS.length].sql;
      await fine.unsafe(`INSERT INTO t SELECT g, 'fine', g::text FROM generate_series(1, 100) g`);
      await waitForEqualRows(() => tableRows(fine, "t"), () => tableRows(dst, "fine"), { kvsz });
      for (const kind of KINDS) {
        const [{ n }] = await dst.unsafe(`SELECT count(*)::int AS n FROM ${kind.table}`);
        assert.equal(n, 1, `only the row before the refused one in ${kind.table}`);
      }

      // The targets take the rows: every row arrives, none cut, none skipped.
      for (const kind of KINDS) await dst.unsafe(kind.repair);
      for (const [i, kind] of KINDS.entries()) {
        await waitForEqualRows(
          () => tableRows(sources[i].sql, "t"),
          () => tableRows(dst, kind.table),
          {
            kvsz,
            what: kind.table,
            timeoutMs: 90_000,
          },
        );
      }
      assert.equal(await kvsz.stop(), 0);
    },

  "a refused initial copy names the tables, the column and the line; copied again once the target takes it":
    async (c) => {
      const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
      await src.unsafe(`CREATE TABLE t (id int PRIMARY KEY, n bigint, note text)`);
      await src.unsafe(`INSERT INTO t VALUES (1, 1, 'a'), (2, 5000000000, 'b'), (3, 3, 'c')`);
      await dst.unsafe(`CREATE TABLE narrow (id int PRIMARY KEY, n integer, note text)`);
      const config = await configFor(c, [srcDb], dstDb, ["narrow"]);
      // `validate` would have refused the types: as if the source changed after it ran.
      await using kvsz = KvszProcess.start(["run", "--config", config, "--skip-checks"]);
      await kvsz.waitForOutput(/retrying in/);
      assert.match(
        kvsz.output,
        /ERR source: copying t into public\.narrow: value "5000000000" is out of range for type integer \(COPY narrow, line 2, column n(: "5000000000")?\): widen public\.narrow\.n \(ALTER TABLE public\.narrow ALTER COLUMN "n" TYPE …\) to take it; kvsz copies the table again when it retries; retrying in/,
      );
      await dst.unsafe(`ALTER TABLE narrow ALTER n TYPE bigint`);
      await src.unsafe(`INSERT INTO t VALUES (4, 4, 'streamed')`);
      await waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "narrow"), { kvsz });
      assert.equal(await kvsz.stop(), 0);
    },
});
