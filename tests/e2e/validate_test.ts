/**
 * `kvsz validate` against real servers: a correctly prepared source and
 * destination pass when checked as the unprivileged users kvsz would run as,
 * and each mistake fails (or warns) with a line naming the object and the fix.
 * Also the catalog readers the checks (and the engine) rely on.
 */
import assert from "node:assert/strict";
import { stringify } from "yaml";
import { clusterSuite, startCluster, type TestCluster } from "../support/cluster.ts";
import { type CliResult, runCli, tempConfig } from "../support/run_cli.ts";
import { connect } from "../../lib/pg/connect.ts";
import { readTargetTable } from "../../lib/apply/catalog.ts";
import { matchingTables, readSourceTable } from "../../lib/source/catalog.ts";
import { freePort } from "../../lib/pg/local_cluster.ts";
import type { Check } from "../../lib/preflight/check.ts";
import { createTenants } from "../support/tenants.ts";
import { validateConfig } from "../../lib/cli/validate.ts";
import { readKnownSources } from "../../lib/preflight/known_sources.ts";
import { loadConfig } from "../../lib/config/load.ts";
import { ensureKvszSchema } from "../../lib/apply/progress.ts";

/** A password that must never be printed. */
const SECRET = "Pw-n3ver-Pr1nted";

interface Setup {
  srcDb: string;
  dstDb: string;
  /** Runs `kvsz validate` with `tables` and optional overrides; `KVSZ_PW` holds {@link SECRET}. */
  validate(opts?: ValidateOpts): Promise<CliResult>;
}

interface ValidateOpts {
  tables?: Record<string, unknown>;
  sourceUser?: string;
  destUser?: string;
  /** Source URLs (sid → URL); default one URL as `sourceUser`. */
  urls?: { url: string; sid: string }[];
  destUrl?: string;
  destSchema?: string;
  replicaRole?: boolean;
  json?: boolean;
  /** The command to run with the config (default `validate`). */
  command?: "validate" | "run";
}

let roleCounter = 0;

/** Creates a LOGIN role with {@link SECRET} as password and returns its name. */
async function createRole(c: TestCluster, attrs = ""): Promise<string> {
  const name = `kvsz_user_${++roleCounter}`;
  await c.sql().unsafe(`CREATE ROLE ${name} LOGIN ${attrs} PASSWORD '${SECRET}'`);
  return name;
}

/** A URL with the password as `${KVSZ_PW}` (expanded by the config loader). */
function urlFor(c: TestCluster, db: string, user: string): string {
  return `postgres://${user}:\${KVSZ_PW}@127.0.0.1:${c.server.port}/${db}`;
}

/**
 * Two fresh databases; the source has t1 (pk), t2 (pk, for history) and the
 * destination their targets with sid, as a DBA would prepare them for a
 * REPLICATION role `src` and a plain role `dst`. The publication is created
 * by the DBA (the kvsz user owns no table, so it could not).
 */
async function prepared(c: TestCluster): Promise<Setup & { srcUser: string; dstUser: string }> {
  const srcDb = await c.createDatabase("src");
  const dstDb = await c.createDatabase("dst");
  const srcUser = await createRole(c, "REPLICATION");
  const dstUser = await createRole(c);
  await c.sql(srcDb).unsafe(`
    CREATE TABLE t1 (id int PRIMARY KEY, name text, salary numeric(10,2));
    CREATE TABLE t2 (id bigint PRIMARY KEY, tags text[], at timestamptz);
    GRANT SELECT ON t1, t2 TO ${srcUser};
    CREATE PUBLICATION kvsz_src_1 FOR TABLE t1, t2;
  `);
  await c.sql(dstDb).unsafe(`
    CREATE TABLE t1 (sid text, id int, name text, salary numeric(10,2), PRIMARY KEY (sid, id));
    CREATE TABLE t2_history (sid text, id bigint, tags text[], at timestamptz,
      kvsz_start timestamptz, kvsz_end timestamptz, kvsz_deleted boolean);
    GRANT INSERT, UPDATE, DELETE, TRUNCATE ON t1 TO ${dstUser};
    GRANT INSERT, UPDATE ON t2_history TO ${dstUser};
    GRANT CREATE ON DATABASE ${dstDb} TO ${dstUser};
  `);
  const setup = makeSetup(c, srcDb, dstDb, srcUser, dstUser);
  return { ...setup, srcUser, dstUser };
}

function makeSetup(
  c: TestCluster,
  srcDb: string,
  dstDb: string,
  srcUser: string,
  dstUser: string,
): Setup {
  return {
    srcDb,
    dstDb,
    async validate(opts: ValidateOpts = {}) {
      const tables = opts.tables ?? { t1: null, t2: { type: "history", target: "t2_history" } };
      const urls = opts.urls ??
        [{ url: urlFor(c, srcDb, opts.sourceUser ?? srcUser), sid: "1" }];
      const config = {
        destination: {
          url: opts.destUrl ?? urlFor(c, dstDb, opts.destUser ?? dstUser),
          ...(opts.destSchema ? { schema: opts.destSchema } : {}),
          ...(opts.replicaRole ? { replica_role: true } : {}),
        },
        databases: [{ database: "src", urls, tables }],
      };
      await using file = await tempConfig(stringify(config));
      const result = await runCli(
        [opts.command ?? "validate", "--config", file.path, ...(opts.json ? ["--json"] : [])],
        { env: { KVSZ_PW: SECRET }, timeoutMs: 30_000 },
      );
      assert(!result.output.includes(SECRET), `password printed:\n${result.output}`);
      return result;
    },
  };
}

/** The output lines starting with `status` whose text includes `what`. */
function lines(result: CliResult, status: "ok" | "WARN" | "FAIL", what: string): string[] {
  return result.stdout.split("\n").filter((l) => l.startsWith(status) && l.includes(what));
}

function assertLine(result: CliResult, status: "ok" | "WARN" | "FAIL", ...parts: string[]) {
  const found = result.stdout.split("\n").filter((l) =>
    l.startsWith(status) && parts.every((p) => l.includes(p))
  );
  assert(found.length > 0, `no ${status} line with ${JSON.stringify(parts)} in:\n${result.output}`);
}

clusterSuite("kvsz validate", {
  "warns about a kvsz slot no config uses": async (c) => {
    const s = await prepared(c);
    const admin = c.sql(s.srcDb);
    await admin.unsafe(`SELECT pg_create_logical_replication_slot('kvsz_src_99', 'pgoutput')`);
    try {
      const r = await s.validate();
      assert.equal(r.code, 0, r.output);
      assertLine(r, "WARN", "unused slot kvsz_src_99", "pg_drop_replication_slot");
      assert.equal(lines(r, "WARN", "unused slot kvsz_src_1").length, 0);
    } finally {
      await admin.unsafe(`SELECT pg_drop_replication_slot('kvsz_src_99')`);
    }
  },
  "passes on a correctly set-up source and destination, run as new users would": async (c) => {
    const s = await prepared(c);
    const r = await s.validate();
    assert.deepStrictEqual(r.code, 0, r.output);
    for (const l of r.stdout.trim().split("\n").slice(0, -2)) assert.match(l, /^ok {3}/);
    assertLine(r, "ok", "source src sid 1", "wal_level");
    assertLine(r, "ok", "replication connection");
    assertLine(r, "ok", "publication kvsz_src_1");
    assertLine(r, "ok", "table public.t2_history", "history columns");
    assert.match(r.stdout, /kvsz\.yaml: \d+ ok, 0 warnings, 0 failed/);

    const json = await s.validate({ json: true });
    assert.deepStrictEqual(json.code, 0);
    const checks = JSON.parse(json.stdout) as { status: string; check: string }[];
    assert(checks.length >= 15);
    assert(checks.every((x) => x.status === "ok"), json.stdout);
  },

  "two sids whose slot names collide: validate and run refuse the config, naming both (exit 2)":
    async (c) => {
      const s = await prepared(c);
      // As a DBA would prepare it: the one publication both sources would use.
      await c.sql(s.srcDb).unsafe(`CREATE PUBLICATION kvsz_src_eu_1 FOR TABLE t1, t2`);
      const url = urlFor(c, s.srcDb, s.srcUser);
      const urls = [{ url, sid: "eu-1" }, { url, sid: "EU.1" }];
      for (const command of ["validate", "run"] as const) {
        const r = await s.validate({ urls, command });
        assert.equal(r.code, 2, `${command}:\n${r.output}`);
        assert.match(
          r.stderr,
          /kvsz\.yaml:\d+: databases\[0\]\.urls\[1\]\.sid: database "src" sid "EU\.1" collides with databases\[0\]\.urls\[0\] \(line \d+\), database "src" sid "eu-1": .* named kvsz_src_eu_1; give one of them another sid/,
        );
      }
    },

  "run checks the sources the destination knows through one per server and table list, the new ones each":
    async (c) => {
      const s = await prepared(c);
      // Tenants 2 and 3 streamed before (progress at the destination); 3 lost a table since.
      const dbs = [s.srcDb, await c.createDatabase("src"), await c.createDatabase("src")];
      for (const db of dbs.slice(1)) {
        await c.sql(db).unsafe(`
          CREATE TABLE t1 (id int PRIMARY KEY, name text, salary numeric(10,2));
          CREATE TABLE t2 (id bigint PRIMARY KEY, tags text[], at timestamptz);
          GRANT SELECT ON t1, t2 TO ${s.srcUser};
          CREATE PUBLICATION kvsz_src_${db === dbs[1] ? 2 : 3} FOR TABLE t1, t2;`);
      }
      await c.sql(dbs[2]).unsafe(`DROP TABLE t2`);
      // Known too, each in an entry of its own (a tenant per entry): "copy" has src's
      // tables (src's check stands for it), "other" another list (checked).
      await c.sql(dbs[2]).unsafe(`CREATE PUBLICATION kvsz_copy_4 FOR TABLE t1`);
      await c.sql(dbs[1]).unsafe(`CREATE PUBLICATION kvsz_other_5 FOR TABLE t1`);
      const dest = c.sql(s.dstDb);
      await ensureKvszSchema(dest);
      await dest.unsafe(
        `INSERT INTO kvsz.progress (database, sid, commit_lsn, end_lsn) VALUES
           ('src', '2', '0/1', '0/1'), ('src', '3', '0/1', '0/1'),
           ('copy', '4', '0/1', '0/1'), ('other', '5', '0/1', '0/1')`,
      );
      const tables = { t1: null, t2: { type: "history", target: "t2_history" } };
      const yaml = stringify({
        destination: { url: c.url(s.dstDb) },
        databases: [{
          database: "src",
          urls: dbs.map((db, i) => ({ url: c.url(db), sid: String(i + 1) })),
          tables,
        }, {
          database: "copy",
          urls: [{ url: c.url(dbs[2]), sid: "4" }],
          tables,
        }, {
          database: "other",
          urls: [{ url: c.url(dbs[1]), sid: "5" }],
          tables: { t1: null },
        }],
      });
      await using file = await tempConfig(yaml);
      const config = await loadConfig(file.path);
      const failed = (checks: Check[]) =>
        checks.filter((x) => x.status === "FAIL").map((x) => x.check);

      // validate checks every source: the missing table of tenants 3 and 4 fails.
      const all = await validateConfig(config);
      assert.deepEqual(failed(all).map((f) => f.replace(/ \(.*\)/, "")).sort(), [
        "source copy sid 4 table public.t2",
        "source src sid 3 table public.t2",
      ]);

      // run: tenant 1 (new), tenant 2 (standing for the known ones with its tables, in
      // any entry) and tenant 5 (another table list) are checked; tenants 3 and 4 are
      // left to their pipelines, which stop them alone.
      const known = await readKnownSources(config);
      assert.equal(known.size, 4);
      const atRun = await validateConfig(config, { known });
      assert.deepEqual(failed(atRun), []);
      const checked = new Set(atRun.map((x) => x.check.match(/^source (\w+ sid \d+)/)?.[1]));
      assert.deepEqual([...checked].filter(Boolean).sort(), [
        "other sid 5",
        "src sid 1",
        "src sid 2",
      ]);
      assert.ok(atRun.some((x) => x.check.startsWith("2 source(s) that streamed before")));
      // The destination side of "copy" is still compared with the source's columns (src's).
      assert.ok(
        atRun.some((x) =>
          /table public\.t1 \(from copy public\.t1, clone\) column types$/.test(x.check)
        ),
        "copy's target columns compared",
      );
    },

  "a missing source table fails, naming it": async (c) => {
    const s = await prepared(c);
    const r = await s.validate({ tables: { t1: null, "public.nope": null } });
    assert.deepStrictEqual(r.code, 1, r.output);
    assertLine(r, "FAIL", "table public.nope", "no table public.nope");
    assertLine(r, "ok", "table public.t1");
  },

  "a role without REPLICATION fails with the ALTER ROLE to run": async (c) => {
    const s = await prepared(c);
    const plain = await createRole(c);
    await c.sql(s.srcDb).unsafe(`GRANT SELECT ON t1, t2 TO ${plain}`);
    const r = await s.validate({ sourceUser: plain });
    assert.deepStrictEqual(r.code, 1, r.output);
    assertLine(r, "FAIL", `role ${plain} may replicate`, `ALTER ROLE ${plain} REPLICATION`);
  },

  "a role that may not read a table fails with the GRANT": async (c) => {
    const s = await prepared(c);
    await c.sql(s.srcDb).unsafe(`REVOKE SELECT ON t2 FROM ${s.srcUser}`);
    const r = await s.validate();
    assert.deepStrictEqual(r.code, 1, r.output);
    assertLine(r, "FAIL", "table public.t2", `GRANT SELECT ON public.t2 TO ${s.srcUser}`);
  },

  "no publication and no right to create one fails with the CREATE PUBLICATION": async (c) => {
    const s = await prepared(c);
    await c.sql(s.srcDb).unsafe(`DROP PUBLICATION kvsz_src_1`);
    const r = await s.validate();
    assert.deepStrictEqual(r.code, 1, r.output);
    assertLine(
      r,
      "FAIL",
      "publication kvsz_src_1",
      "CREATE PUBLICATION kvsz_src_1 FOR TABLE public.t1, public.t2",
    );
    // The owner of the tables with CREATE on the database may let kvsz create it.
    await c.sql(s.srcDb).unsafe(`
      GRANT CREATE ON DATABASE ${s.srcDb} TO ${s.srcUser};
      ALTER TABLE t1 OWNER TO ${s.srcUser}; ALTER TABLE t2 OWNER TO ${s.srcUser};`);
    const ok = await s.validate();
    assert.deepStrictEqual(ok.code, 0, ok.output);
  },

  "a missing target table fails with a CREATE TABLE built from the source": async (c) => {
    const s = await prepared(c);
    await c.sql(s.dstDb).unsafe(`DROP TABLE t1`);
    const one = await s.validate({ tables: { t1: null } });
    assert.deepStrictEqual(one.code, 1, one.output);
    assertLine(
      one,
      "FAIL",
      "table public.t1",
      "does not exist",
      "CREATE TABLE public.t1 (id integer, name text, salary numeric(10,2), PRIMARY KEY (id));",
    );
    // Several sources of one database: the hint adds sid.
    const urls = ["1", "2"].map((sid) => ({ url: urlFor(c, s.srcDb, s.srcUser), sid }));
    await c.sql(s.srcDb).unsafe(`CREATE PUBLICATION kvsz_src_2 FOR TABLE t1, t2`);
    const two = await s.validate({ urls, tables: { t2: { type: "history", target: "h" } } });
    assert.deepStrictEqual(two.code, 1, two.output);
    assertLine(
      two,
      "FAIL",
      "table public.h",
      "CREATE TABLE public.h (sid text, id bigint, tags text[], at timestamp with time zone, kvsz_start timestamptz, kvsz_end timestamptz, kvsz_deleted boolean);",
    );
  },

  "a column type mismatch fails, naming table, column and both types": async (c) => {
    const s = await prepared(c);
    await c.sql(s.dstDb).unsafe(`ALTER TABLE t1 ALTER COLUMN salary TYPE numeric(12,2)`);
    const r = await s.validate();
    assert.deepStrictEqual(r.code, 1, r.output);
    assertLine(
      r,
      "FAIL",
      "table public.t1",
      "column types",
      "column salary is numeric(12,2) here but numeric(10,2) in src public.t1",
      "ALTER TABLE public.t1 ALTER COLUMN salary TYPE numeric(10,2)",
    );
  },

  "target columns the source lacks: a NOT NULL one fails, one without a default warns, one with a default is yours":
    async (c) => {
      const s = await prepared(c);
      // As after `RENAME salary TO pay` at the source, before kvsz ran here.
      await c.sql(s.srcDb).unsafe(`ALTER TABLE t1 RENAME COLUMN salary TO pay`);
      await c.sql(s.dstDb).unsafe(`
        ALTER TABLE t1 ADD COLUMN loaded_at timestamptz DEFAULT now();
        ALTER TABLE t2_history ADD COLUMN legacy int NOT NULL`);
      const r = await s.validate();
      assert.deepStrictEqual(r.code, 1, r.output);
      assertLine(
        r,
        "WARN",
        "table public.t1",
        "columns: column(s) salary have no default and public.t1 has no such column",
        "fix: if the source dropped or renamed them, drop or rename them here",
      );
      assertLine(
        r,
        "FAIL",
        "table public.t2_history",
        "columns: column(s) legacy are NOT NULL without a default",
        "every new row would fail",
        "ALTER TABLE public.t2_history ALTER COLUMN legacy DROP NOT NULL",
      );
      assert.equal(lines(r, "WARN", "loaded_at").length + lines(r, "FAIL", "loaded_at").length, 0);
    },

  "a history target without the kvsz columns fails": async (c) => {
    const s = await prepared(c);
    await c.sql(s.dstDb).unsafe(`
      ALTER TABLE t2_history DROP COLUMN kvsz_deleted;
      ALTER TABLE t2_history ALTER COLUMN kvsz_end TYPE timestamp`);
    const r = await s.validate();
    assert.deepStrictEqual(r.code, 1, r.output);
    assertLine(
      r,
      "FAIL",
      "table public.t2_history",
      "history columns",
      "missing kvsz_deleted",
      "kvsz_end is timestamp without time zone, must be timestamp with time zone",
      "ADD COLUMN kvsz_deleted boolean",
    );
  },

  "a target without the replica identity key fails; one with no common column warns": async (
    c,
  ) => {
    const s = await prepared(c);
    await c.sql(s.dstDb).unsafe(`
      CREATE TABLE nokey (sid text, name text); GRANT ALL ON nokey TO ${s.dstUser};
      CREATE TABLE nothing (sid text, other int); GRANT ALL ON nothing TO ${s.dstUser};`);
    const r = await s.validate({
      tables: { t1: { target: "nokey" }, t2: { target: "nothing" } },
    });
    assert.deepStrictEqual(r.code, 1, r.output);
    assertLine(
      r,
      "FAIL",
      "table public.nokey",
      "replica identity key",
      "key column id of public.t1 is missing here",
      "ADD COLUMN id integer",
    );
    assertLine(r, "WARN", "table public.nothing", "no column in common");
  },

  "a table without primary key warns but passes": async (c) => {
    const s = await prepared(c);
    await c.sql(s.srcDb).unsafe(`
      CREATE TABLE logs (at timestamptz, line text); GRANT SELECT ON logs TO ${s.srcUser};
      ALTER PUBLICATION kvsz_src_1 ADD TABLE logs;`);
    await c.sql(s.dstDb).unsafe(`
      CREATE TABLE logs (sid text, at timestamptz, line text);
      GRANT INSERT, UPDATE ON logs TO ${s.dstUser};`);
    const r = await s.validate({ tables: { t1: null, logs: { type: "append" } } });
    assert.deepStrictEqual(r.code, 0, r.output);
    assertLine(
      r,
      "WARN",
      "table public.logs replica identity",
      "no primary key",
      "REPLICA IDENTITY FULL",
    );
    assert.match(r.stdout, / 1 warning, 0 failed/);
  },

  "a foreign key between two targets that is not DEFERRABLE warns with the ALTER CONSTRAINT":
    async (
      c,
    ) => {
      const s = await prepared(c);
      await c.sql(s.srcDb).unsafe(`
      CREATE TABLE p (id int PRIMARY KEY);
      CREATE TABLE ch (id int PRIMARY KEY, p_id int REFERENCES p, q_id int REFERENCES p, o_id int);
      GRANT SELECT ON p, ch TO ${s.srcUser};
      ALTER PUBLICATION kvsz_src_1 ADD TABLE p, ch;`);
      await c.sql(s.dstDb).unsafe(`
      CREATE TABLE p (id int PRIMARY KEY);
      CREATE TABLE other (id int PRIMARY KEY);
      CREATE TABLE ch (id int PRIMARY KEY, p_id int REFERENCES p,
        q_id int REFERENCES p DEFERRABLE, o_id int REFERENCES other);
      GRANT ALL ON p, ch TO ${s.dstUser};`);
      const r = await s.validate({ tables: { p: null, ch: null } });
      assert.deepStrictEqual(r.code, 0, r.output);
      assertLine(
        r,
        "WARN",
        "table public.ch",
        "foreign key ch_p_id_fkey to public.p is not DEFERRABLE",
        "one change at a time",
        "ALTER TABLE public.ch ALTER CONSTRAINT ch_p_id_fkey DEFERRABLE;",
      );
      // Deferrable, or to a table kvsz does not write: nothing to say.
      assert.doesNotMatch(r.stdout, /ch_q_id_fkey|ch_o_id_fkey/);
      assert.match(r.stdout, / 1 warning, 0 failed/);
    },

  "a history target unique on the key and kvsz_start warns: versions of one transaction share it":
    async (c) => {
      const s = await prepared(c);
      await c.sql(s.dstDb).unsafe(`ALTER TABLE t2_history ADD PRIMARY KEY (sid, id, kvsz_start)`);
      const r = await s.validate();
      assert.deepStrictEqual(r.code, 0, r.output);
      assertLine(
        r,
        "WARN",
        "table public.t2_history",
        "unique (sid, id, kvsz_start)",
        "rejects the versions of a key changed twice in one source transaction",
        "CREATE UNIQUE INDEX ON public.t2_history (sid, id) WHERE kvsz_end = '9999-01-01';",
      );
    },

  "destination.replica_role without the right to set session_replication_role fails with the GRANT":
    async (c) => {
      const s = await prepared(c);
      let r = await s.validate({ replicaRole: true });
      assert.deepStrictEqual(r.code, 1, r.output);
      assertLine(
        r,
        "FAIL",
        "replica_role",
        `role ${s.dstUser} may not set session_replication_role`,
        `GRANT SET ON PARAMETER session_replication_role TO ${s.dstUser};`,
      );
      await c.sql().unsafe(`GRANT SET ON PARAMETER session_replication_role TO ${s.dstUser}`);
      r = await s.validate({ replicaRole: true });
      assert.deepStrictEqual(r.code, 0, r.output);
      assertLine(r, "ok", "replica_role");
    },

  "partitions_regex: leaves are checked, the partitions publication named; a regex that matches nothing fails":
    async (c) => {
      const s = await prepared(c);
      await c.sql(s.srcDb).unsafe(`
      CREATE TABLE ev (id int, k text) PARTITION BY LIST (k);
      CREATE TABLE ev_a PARTITION OF ev FOR VALUES IN ('a');
      CREATE TABLE ev_b PARTITION OF ev FOR VALUES IN ('b');
      GRANT SELECT ON ev_a, ev_b TO ${s.srcUser};`);
      await c.sql(s.dstDb).unsafe(`
      CREATE TABLE ev (sid text, id int, k text); GRANT INSERT, UPDATE ON ev TO ${s.dstUser};`);
      const tables = { ev: { type: "append", partitions_regex: "ev_.*" } };
      // The leaves of a partitioned table are published through a publication of their own.
      const missing = await s.validate({ tables });
      assert.deepStrictEqual(missing.code, 1, missing.output);
      assertLine(
        missing,
        "FAIL",
        "publication kvszp_src_1",
        "CREATE PUBLICATION kvszp_src_1 FOR TABLE public.ev;",
      );
      await c.sql(s.srcDb).unsafe(`CREATE PUBLICATION kvszp_src_1 FOR TABLE ev`);
      const r = await s.validate({ tables });
      assert.deepStrictEqual(r.code, 0, r.output);
      assertLine(r, "ok", "table public.ev", "");
      assertLine(r, "WARN", "table public.ev replica identity (public.ev_a)", "no primary key");
      assertLine(r, "WARN", "table public.ev replica identity (public.ev_b)", "no primary key");
      assertLine(r, "ok", "table public.ev (from src public.ev, append) column types");

      const none = await s.validate({ tables: { ev: { partitions_regex: "ev_[0-9]+" } } });
      assert.deepStrictEqual(none.code, 1, none.output);
      assertLine(
        none,
        "FAIL",
        "table public.ev",
        'no partition of public.ev matches partitions_regex "ev_[0-9]+"',
      );
    },

  "destination problems: privileges, schema kvsz, destination.schema": async (c) => {
    const s = await prepared(c);
    await c.sql(s.dstDb).unsafe(`
      REVOKE CREATE ON DATABASE ${s.dstDb} FROM ${s.dstUser};
      REVOKE DELETE, TRUNCATE ON t1 FROM ${s.dstUser};`);
    const r = await s.validate();
    assert.deepStrictEqual(r.code, 1, r.output);
    assertLine(r, "FAIL", "schema kvsz", `CREATE SCHEMA kvsz AUTHORIZATION ${s.dstUser}`);
    assertLine(r, "FAIL", "table public.t1", `GRANT DELETE, TRUNCATE ON public.t1 TO ${s.dstUser}`);

    const wrongSchema = await s.validate({ destSchema: "warehouse" });
    assert.deepStrictEqual(wrongSchema.code, 1, wrongSchema.output);
    assertLine(
      wrongSchema,
      "FAIL",
      "schema warehouse",
      "does not exist",
      "CREATE SCHEMA warehouse",
    );
    await c.sql(s.dstDb).unsafe(`CREATE SCHEMA warehouse`);
    const noUsage = await s.validate({ destSchema: "warehouse" });
    assertLine(
      noUsage,
      "FAIL",
      "schema warehouse",
      `GRANT USAGE ON SCHEMA warehouse TO ${s.dstUser}`,
    );
  },

  "unreachable source and destination, and a wrong password, fail without leaking it": async (
    c,
  ) => {
    const s = await prepared(c);
    const closed = freePort();
    const r = await s.validate({
      urls: [
        { url: `postgres://${s.srcUser}:\${KVSZ_PW}@127.0.0.1:${closed}/src`, sid: "1" },
        { url: `postgres://${s.srcUser}:wrong-\${KVSZ_PW}@127.0.0.1:${c.server.port}/x`, sid: "2" },
      ],
      destUrl: `postgres://${s.dstUser}:\${KVSZ_PW}@127.0.0.1:${closed}/${s.dstDb}`,
    });
    assert.deepStrictEqual(r.code, 1, r.output);
    assertLine(r, "FAIL", `source src sid 1 (127.0.0.1:${closed}/src) reachable`, "ECONNREFUSED");
    assertLine(r, "FAIL", "source src sid 2", "reachable", "password authentication failed");
    assertLine(r, "FAIL", `destination (127.0.0.1:${closed}/${s.dstDb}) reachable`);
    assert.deepStrictEqual(lines(r, "ok", "").length, 0, r.output);
  },

  "catalog readers: columns, keys, replica identity, partitions": async (c) => {
    const db = await c.createDatabase("cat");
    await c.sql(db).unsafe(`
      CREATE SCHEMA s;
      CREATE TABLE s.a (id int, gone int, code text NOT NULL, n numeric(8,3) DEFAULT 0,
        seq int GENERATED ALWAYS AS IDENTITY, twice int GENERATED ALWAYS AS (id * 2) STORED,
        sid text, kvsz_start timestamptz, kvsz_end timestamptz, kvsz_deleted boolean,
        PRIMARY KEY (code, id));
      ALTER TABLE s.a DROP COLUMN gone;
      CREATE UNIQUE INDEX a_code ON s.a (code);
      ALTER TABLE s.a REPLICA IDENTITY USING INDEX a_code;
      CREATE TABLE s.p (id int, k text, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
      CREATE TABLE s.p_x PARTITION OF s.p FOR VALUES IN ('x');
      CREATE TABLE s.p_y PARTITION OF s.p FOR VALUES IN ('y') PARTITION BY LIST (id);
      CREATE TABLE s.p_y1 PARTITION OF s.p_y FOR VALUES IN (1);
      CREATE TABLE s.p_x_old (id int);
      CREATE TABLE s.full_t (v json); ALTER TABLE s.full_t REPLICA IDENTITY FULL;
      CREATE VIEW s.v AS SELECT 1 AS one;`);
    const sql = connect(c.url(db));
    try {
      const a = await readSourceTable(sql, "s", "a");
      assert(a);
      assert.deepStrictEqual(a.kind, "table");
      assert.deepStrictEqual(a.replicaIdentity, "i");
      assert.deepStrictEqual(a.identityColumns, ["code"]);
      assert.deepStrictEqual(a.primaryKey, ["code", "id"]);
      assert.deepStrictEqual(a.columns.map((x) => x.name), [
        "id",
        "code",
        "n",
        "seq",
        "twice",
        "sid",
        "kvsz_start",
        "kvsz_end",
        "kvsz_deleted",
      ]);
      assert.deepStrictEqual(a.columns[2], {
        name: "n",
        type: "numeric(8,3)",
        typeOid: 1700,
        typeMod: ((8 << 16) | 3) + 4,
      });

      const p = await readSourceTable(sql, "s", "p");
      assert(p);
      assert.deepStrictEqual(p.kind, "partitioned");
      assert.deepStrictEqual(p.identityColumns, ["id", "k"]);
      assert.deepStrictEqual(p.leafPartitions, [{ schema: "s", name: "p_x" }, {
        schema: "s",
        name: "p_y1",
      }]);
      const full = await readSourceTable(sql, "s", "full_t");
      assert.deepStrictEqual([full?.replicaIdentity, full?.identityColumns], ["f", []]);
      assert.deepStrictEqual(await readSourceTable(sql, "s", "v"), null);
      assert.deepStrictEqual(await readSourceTable(sql, "s", "A"), null);

      assert.deepStrictEqual(await matchingTables(sql, "s", "p_.*"), [
        { schema: "s", name: "p_x" },
        { schema: "s", name: "p_x_old" },
        { schema: "s", name: "p_y1" },
      ]);
      assert.deepStrictEqual((await matchingTables(sql, "s", "p_x|p_y1")).map((t) => t.name), [
        "p_x",
        "p_y1",
      ]);
      assert.deepStrictEqual(await matchingTables(sql, "s", "p"), []);

      const t = await readTargetTable(sql, "s", "a");
      assert(t);
      assert.deepStrictEqual([...t.columns.keys()], [
        "id",
        "code",
        "n",
        "seq",
        "sid",
        "kvsz_start",
        "kvsz_end",
        "kvsz_deleted",
      ]);
      assert.deepStrictEqual(t.columns.get("code"), {
        name: "code",
        type: "text",
        typeOid: 25,
        notNull: true,
        hasDefault: false,
      });
      assert.deepStrictEqual(t.columns.get("n")?.hasDefault, true);
      assert.deepStrictEqual(t.columns.get("seq")?.hasDefault, true);
      assert.deepStrictEqual(t.primaryKey, ["code", "id"]);
      assert.deepStrictEqual([t.hasSid, t.hasHistoryColumns], [true, true]);
      const px = await readTargetTable(sql, "s", "p");
      assert.deepStrictEqual([px?.hasSid, px?.hasHistoryColumns, px?.primaryKey], [false, false, [
        "id",
        "k",
      ]]);
      assert.deepStrictEqual(await readTargetTable(sql, "s", "missing"), null);

      // Only unique indexes that reject a duplicate at once count: a plain INSERT of
      // new keys relies on them (partial, deferrable and expression indexes do not).
      await sql.unsafe(`CREATE TABLE s.u (id int PRIMARY KEY, a int, b text, c int, d int,
        UNIQUE (b, a), UNIQUE (c) DEFERRABLE INITIALLY IMMEDIATE);
        CREATE UNIQUE INDEX u_partial ON s.u (d) WHERE d > 0;
        CREATE UNIQUE INDEX u_expr ON s.u (lower(b));
        CREATE UNIQUE INDEX u_include ON s.u (a) INCLUDE (c)`);
      assert.deepStrictEqual((await readTargetTable(sql, "s", "u"))?.uniqueKeys, [
        ["id"],
        ["b", "a"],
        ["a"],
      ]);
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name: "kvsz validate: a server not ready for logical replication (wal_level, slots, senders)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using c = await startCluster({
      settings: { wal_level: "replica", max_replication_slots: 1, max_wal_senders: 2 },
    });
    const srcDb = await c.createDatabase("src");
    const dstDb = await c.createDatabase("dst");
    const user = await createRole(c, "REPLICATION");
    await c.sql(srcDb).unsafe(
      `CREATE TABLE t1 (id int PRIMARY KEY); GRANT SELECT ON t1 TO ${user}`,
    );
    await c.sql(dstDb).unsafe(`CREATE TABLE t1 (id int PRIMARY KEY)`);
    await c.sql().unsafe(`SELECT pg_create_physical_replication_slot('standby_1')`);
    // Both WAL senders are taken by other replication connections.
    const busy = [0, 1].map(() => connect(c.url(srcDb), { replication: true }));
    await Promise.all(busy.map((b) => b.unsafe("IDENTIFY_SYSTEM")));
    const s = makeSetup(c, srcDb, dstDb, user, "postgres");
    const r = await s.validate({
      tables: { t1: null },
      destUrl: c.url(dstDb),
    });
    // The destination URL holds the superuser's password: it must not leak either.
    assert(!r.output.includes(c.server.password), r.output);
    assert.deepStrictEqual(r.code, 1, r.output);
    assertLine(
      r,
      "FAIL",
      "wal_level",
      "wal_level is replica",
      "ALTER SYSTEM SET wal_level = logical; then restart the server",
    );
    assertLine(
      r,
      "FAIL",
      "replication connection",
      "max_wal_senders",
      "ALTER SYSTEM SET max_wal_senders = 3",
    );
    const server = `source server 127.0.0.1:${c.server.port}`;
    assertLine(
      r,
      "FAIL",
      `${server} wal senders`,
      "kvsz needs 1 WAL sender there (one replication connection per source: 1 source), only 0 free: max_wal_senders = 2, 2 in use by others",
      "ALTER SYSTEM SET max_wal_senders = 3",
    );
    assertLine(
      r,
      "FAIL",
      `${server} replication slots`,
      "kvsz needs 1 replication slot there",
      "only 0 free: max_replication_slots = 1, 1 in use by others",
      "ALTER SYSTEM SET max_replication_slots = 2",
    );
    assertLine(r, "ok", `${server} connections`);
    assert.match(r.stdout, /^ok {3}source src sid 1 .* reachable$/m);
    await Promise.all(busy.map((b) => b.end()));
  },
});

Deno.test({
  name: "kvsz validate: 40 tenants on a server with too few WAL senders, then enough",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using c = await startCluster({
      settings: { wal_level: "replica", max_wal_senders: 10, max_replication_slots: 50 },
    });
    const tenants = await createTenants(c, 40, {
      ddl: `CREATE TABLE accounts (id int PRIMARY KEY, v text)`,
    });
    const dstDb = await c.createDatabase("dst");
    await c.sql(dstDb).unsafe(
      `CREATE TABLE accounts (sid text, id int, v text, PRIMARY KEY (sid, id))`,
    );
    await using file = await tempConfig(stringify({
      destination: { url: c.url(dstDb) },
      databases: [{
        database: "tenants",
        urls: tenants.map((db, i) => ({ url: c.url(db), sid: String(i + 1) })),
        tables: { accounts: null },
      }],
    }));
    const validate = async (...args: string[]) => {
      const r = await runCli(["validate", "--config", file.path, ...args], { timeoutMs: 90_000 });
      assert(!r.output.includes(c.server.password), `password printed:\n${r.output}`);
      return r;
    };
    const server = `127.0.0.1:${c.server.port}`;

    const r = await validate();
    assert.equal(r.code, 1, r.output);
    // Every tenant has the same problem: one line with the count, not 40.
    const walLevel = r.stdout.split("\n").filter((l) => l.includes("wal_level"));
    assert.deepStrictEqual(walLevel, [
      `FAIL wal_level on 40 sources of ${server} (tenants sid 1, tenants sid 2, tenants sid 3, … ` +
      `37 more): wal_level is replica; logical replication needs logical — fix: ALTER SYSTEM SET ` +
      `wal_level = logical; then restart the server`,
    ]);
    assertLine(
      r,
      "FAIL",
      `source server ${server} wal senders`,
      "kvsz needs 40 WAL senders there (one replication connection per source: 40 sources), " +
        "only 10 free: max_wal_senders = 10, 0 in use by others",
      "ALTER SYSTEM SET max_wal_senders = 40;",
    );
    assertLine(r, "ok", `source server ${server} replication slots`);
    assertLine(r, "ok", `source server ${server} connections`);
    assert.ok(r.stdout.split("\n").length < 40, r.stdout);
    // --json keeps every check, each naming its source.
    const json = JSON.parse((await validate("--json")).stdout) as Check[];
    const levels = json.filter((x) => x.check.endsWith(" wal_level"));
    assert.equal(levels.length, 40);
    assert.ok(levels.every((x) => x.status === "FAIL" && x.source?.server === server));

    await c.server.configure({ wal_level: "logical", max_wal_senders: 40 });
    await c.server.restart();
    const raised = await validate();
    assert.equal(raised.code, 0, raised.output);
    assertLine(raised, "ok", `source server ${server} wal senders`);
    assertLine(raised, "ok", `wal_level on 40 sources of ${server}`);
  },
});
