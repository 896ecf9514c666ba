/**
 * `destination.create_tables`: `kvsz run` creates into a destination what the
 * targets need from the source's catalog, copies, streams, and once the copy
 * is done adds the indexes, constraints and triggers; also for a table added by
 * SIGHUP and for an entry whose sources are all discovered.
 */
import assert from "node:assert/strict";
import { stringify } from "yaml";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import type { Sql } from "../../lib/pg/connect.ts";
import {
  KvszProcess,
  runConfig,
  tableRows,
  waitFor,
  waitForEqualRows,
  writeConfig,
} from "../support/kvsz.ts";

const SOURCE_SCHEMA = `
  CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
  CREATE DOMAIN positive AS int CHECK (VALUE > 0);
  CREATE TYPE point2 AS (x int, y int);
  CREATE SEQUENCE shared_seq START 100;
  CREATE TABLE parent (
    id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CONSTRAINT parent_name_key UNIQUE,
    m mood DEFAULT 'ok',
    qty positive,
    p point2,
    total int GENERATED ALWAYS AS (qty * 2) STORED,
    code int DEFAULT nextval('shared_seq'),
    CONSTRAINT parent_name_check CHECK (length(name) > 0));
  CREATE INDEX parent_m ON parent (m);
  CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id), v text);
  CREATE TABLE events (id int, y int, v text, PRIMARY KEY (id, y)) PARTITION BY RANGE (y);
  CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM (2024) TO (2025);
  CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM (2025) TO (2026);
  CREATE TABLE "Mixed Case" ("we""ird" int PRIMARY KEY, "Other Col" text);
  CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
  CREATE TRIGGER child_stamp BEFORE INSERT ON child FOR EACH ROW EXECUTE PROCEDURE stamp();
  CREATE VIEW parent_names AS SELECT name FROM parent;
`;

/** Index and constraint definitions of schema public (foreign keys apart), to compare. */
async function definitions(sql: Sql): Promise<string[]> {
  const rows = await sql.unsafe(
    `SELECT c.relname || ': ' || pg_get_indexdef(i.indexrelid) AS d
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE c.relnamespace = 'public'::regnamespace
     UNION ALL
     SELECT conname || ': ' || pg_get_constraintdef(oid) FROM pg_constraint
      WHERE connamespace = 'public'::regnamespace AND contype <> 'f'
     UNION ALL
     SELECT tgname FROM pg_trigger WHERE NOT tgisinternal
     ORDER BY 1`,
  );
  return rows.map((r) => String(r.d));
}

function config(c: TestCluster, srcDb: string, dstDb: string, tables: Record<string, unknown>) {
  const cfg = runConfig(c, srcDb, dstDb, tables);
  return { ...cfg, destination: { ...cfg.destination, create_tables: true } };
}

clusterSuite("kvsz run: destination.create_tables", {
  "an empty destination gets types, sequences, tables, partitions, then indexes, constraints, triggers":
    async (c) => {
      const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
      await src.unsafe(SOURCE_SCHEMA);
      await src.unsafe(
        `INSERT INTO parent (name, m, qty, p) SELECT 'n' || g, 'happy', g, ROW(g, g)::point2
           FROM generate_series(1, 20) g`,
      );
      await src.unsafe(`INSERT INTO child SELECT g, g, 'c' FROM generate_series(1, 20) g`);
      await src.unsafe(
        `INSERT INTO events SELECT g, 2024 + g % 2, 'e' FROM generate_series(1, 20) g`,
      );
      await src.unsafe(`INSERT INTO "Mixed Case" VALUES (1, 'one')`);
      // Functions are not created: the trigger's is made here beforehand.
      await dst.unsafe(
        `CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$`,
      );
      const tables = { parent: null, child: null, events: null, "Mixed Case": null };
      const path = await writeConfig(config(c, srcDb, dstDb, tables));
      await using kvsz = KvszProcess.start(["run", "--config", path]);
      await kvsz.waitForOutput(/after the initial copy/, 90_000);
      for (const t of ["parent", "child", "events", `"Mixed Case"`]) {
        await waitForEqualRows(() => tableRows(src, t), () => tableRows(dst, t), {
          kvsz,
          what: `copy of ${t}`,
        });
      }
      assert.deepEqual(await definitions(dst), await definitions(src));
      const [fk] = await dst.unsafe(
        `SELECT pg_get_constraintdef(oid) AS d FROM pg_constraint WHERE conname = 'child_parent_id_fkey'`,
      );
      assert.match(String(fk.d), /REFERENCES parent\(id\) DEFERRABLE INITIALLY DEFERRED/);
      const [seq] = await dst.unsafe(`SELECT last_value::int AS v FROM shared_seq`);
      assert.equal(seq.v, 119);
      assert.match(kvsz.output, /does not create .*stamp\(\).*pg_dump --schema-only/s);
      assert.match(kvsz.output, /view: public\.parent_names/);
      assert.doesNotMatch(kvsz.output, /could not create/);

      await src.unsafe(`INSERT INTO parent (name, m, qty, p) VALUES ('new', 'sad', 3, ROW(1, 2))`);
      await src.unsafe(`INSERT INTO child VALUES (100, 21, 'new')`);
      await src.unsafe(`UPDATE events SET v = 'updated' WHERE id < 5`);
      await src.unsafe(`INSERT INTO "Mixed Case" VALUES (2, 'two')`);
      for (const t of ["parent", "child", "events", `"Mixed Case"`]) {
        await waitForEqualRows(() => tableRows(src, t), () => tableRows(dst, t), {
          kvsz,
          what: `streaming of ${t}`,
        });
      }
      assert.equal(await kvsz.stop(), 0);
    },

  "two sources into one target: sid leads the primary key": async (c) => {
    const a = await c.createDatabase("src");
    const b = await c.createDatabase("src");
    const dstDb = await c.createDatabase("dst");
    for (const [db, n] of [[a, 1], [b, 2]] as const) {
      await c.sql(db).unsafe(
        `CREATE TABLE t (id int PRIMARY KEY, v text UNIQUE);
         INSERT INTO t VALUES (1, 'from ${n}'), (2, 'two ${n}')`,
      );
    }
    const cfg = config(c, a, dstDb, { t: null });
    cfg.databases[0].urls = [{ url: c.url(a), sid: "1" }, { url: c.url(b), sid: "2" }];
    const path = await writeConfig(cfg);
    await using kvsz = KvszProcess.start(["run", "--config", path]);
    const dst = c.sql(dstDb);
    await kvsz.waitForOutput(/after the initial copy/, 90_000);
    await waitFor(async () => (await tableRows(dst, "t")).length === 4, { what: "4 rows" });
    const keys = await dst.unsafe(
      `SELECT pg_get_constraintdef(oid) AS d FROM pg_constraint
        WHERE conrelid = 't'::regclass AND contype IN ('p', 'u') ORDER BY 1`,
    );
    assert.deepEqual(keys.map((k) => k.d), ["PRIMARY KEY (sid, id)", "UNIQUE (sid, v)"]);
    await c.sql(b).unsafe(`INSERT INTO t VALUES (3, 'three')`);
    await waitFor(async () => (await tableRows(dst, "t", "sid, id", "id = 3")).length === 1, {
      what: "a streamed row of sid 2",
    });
    assert.equal(await kvsz.stop(), 0);
  },

  "a history target gets the kvsz columns and a version per update": async (c) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    await src.unsafe(`CREATE TABLE h (id int PRIMARY KEY, v text UNIQUE)`);
    await src.unsafe(`INSERT INTO h VALUES (1, 'one'), (2, 'two')`);
    const path = await writeConfig(config(c, srcDb, dstDb, { h: { type: "history" } }));
    await using kvsz = KvszProcess.start(["run", "--config", path]);
    await kvsz.waitForOutput(/after the initial copy/, 90_000);
    await waitFor(async () => (await tableRows(dst, "h")).length === 2, { what: "copy of h" });
    const columns = await dst.unsafe(
      `SELECT string_agg(attname, ',' ORDER BY attnum) AS c FROM pg_attribute
        WHERE attrelid = 'h'::regclass AND attnum > 0`,
    );
    assert.equal(columns[0].c, "id,v,kvsz_start,kvsz_end,kvsz_deleted");
    const indexes = await dst.unsafe(
      `SELECT indexrelid::regclass::text AS i FROM pg_index WHERE indrelid = 'h'::regclass ORDER BY 1`,
    );
    assert.deepEqual(indexes.map((r) => r.i), ["h_kvsz_current", "h_kvsz_start"]);
    await src.unsafe(`UPDATE h SET v = 'uno' WHERE id = 1`);
    await waitFor(async () => (await tableRows(dst, "h", "v", "id = 1")).length === 2, {
      what: "two versions of id 1",
    });
    assert.match(kvsz.output, /constraint: h_v_key of h \(history target/);
    assert.equal(await kvsz.stop(), 0);
  },

  "a table added by SIGHUP and a discovered entry's tables are created too": async (c) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    await src.unsafe(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')`);
    await src.unsafe(
      `CREATE TABLE u (id int PRIMARY KEY, v text); CREATE INDEX u_v ON u (v);
       INSERT INTO u VALUES (1, 'b')`,
    );
    const prefix = `ten${crypto.randomUUID().slice(0, 6)}`;
    const tenant = `${prefix}_7`;
    const admin = c.sql();
    await admin.unsafe(`CREATE DATABASE ${tenant}`);
    const ten = c.sql(tenant);
    await ten.unsafe(
      `CREATE TABLE acc (id int PRIMARY KEY, n int); INSERT INTO acc VALUES (1, 10)`,
    );
    const withTables = (tables: Record<string, unknown>) => {
      const cfg = config(c, srcDb, dstDb, tables);
      const discovered = {
        database: "tenants",
        discover: {
          url: c.url("postgres"),
          pattern: `${prefix}_(\\d+)`,
          sid: "$$1",
          interval_seconds: 1,
        },
        tables: { acc: null },
      };
      return { ...cfg, databases: [...cfg.databases, discovered] };
    };
    const path = await writeConfig(withTables({ t: null }));
    await using kvsz = KvszProcess.start(["run", "--config", path]);
    await waitForEqualRows(
      () => tableRows(ten, "acc"),
      () => tableRows(dst, "acc", "id, n", "sid = '7'"),
      { kvsz, what: "the discovered tenant's table" },
    );
    await kvsz.waitForOutput(/after the initial copy/, 90_000);
    await Deno.writeTextFile(path, stringify(withTables({ t: null, u: null })));
    Deno.kill(kvsz.pid, "SIGHUP");
    await waitForEqualRows(() => tableRows(src, "u"), () => tableRows(dst, "u"), {
      kvsz,
      what: "the table added by SIGHUP",
    });
    await waitFor(
      async () => (await dst.unsafe(`SELECT 1 FROM pg_indexes WHERE indexname = 'u_v'`)).length > 0,
      { what: "u's index, made after its copy", context: () => kvsz.output.slice(-3000) },
    );
    assert.doesNotMatch(kvsz.output, /could not create|do not exist/);
    assert.equal(await kvsz.stop(), 0);
  },

  "a table the user made is left alone": async (c) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    await src.unsafe(
      `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE u (id int PRIMARY KEY)`,
    );
    await src.unsafe(`INSERT INTO t VALUES (1, 'a'); INSERT INTO u VALUES (1)`);
    await dst.unsafe(`CREATE TABLE t (id int PRIMARY KEY, v text, mine text DEFAULT 'x')`);
    const path = await writeConfig(config(c, srcDb, dstDb, { t: null, u: null }));
    await using kvsz = KvszProcess.start(["run", "--config", path]);
    await kvsz.waitForOutput(/after the initial copy/, 90_000);
    await waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "t", "id, v"), {
      kvsz,
    });
    await waitForEqualRows(() => tableRows(src, "u"), () => tableRows(dst, "u"), { kvsz });
    assert.match(kvsz.output, /table "public"\."t" exists: left as it is/);
    assert.deepEqual(await tableRows(dst, "t", "mine"), ['{"mine":"x"}']);
    assert.doesNotMatch(kvsz.output, /\bERR\b/);
    assert.equal(await kvsz.stop(), 0);
  },
});
