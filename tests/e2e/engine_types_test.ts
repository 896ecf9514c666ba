/**
 * Every listed data type round-trips exactly, through the initial copy and
 * through streaming (insert, update, delete), including NULL in each column;
 * replica identity DEFAULT, FULL with and without a key, duplicates under FULL.
 */
import assert from "node:assert/strict";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitForEqualRows, writeConfig } from "../support/kvsz.ts";

const TYPE_COLUMNS = `
  c_bigint bigint, c_bit bit(4), c_varbit varbit(8), c_bool boolean, c_box box, c_bytea bytea,
  c_char char(3), c_varchar varchar(20), c_cidr cidr, c_circle circle, c_date date,
  c_float8 float8, c_inet inet, c_int integer, c_interval interval, c_json json, c_jsonb jsonb,
  c_line line, c_lseg lseg, c_macaddr macaddr, c_macaddr8 macaddr8, c_money money,
  c_numeric numeric, c_path path, c_pg_lsn pg_lsn, c_point point, c_polygon polygon,
  c_real real, c_smallint smallint, c_serial serial, c_bigserial bigserial, c_text text,
  c_time time, c_timetz timetz, c_timestamp timestamp, c_timestamptz timestamptz,
  c_tsquery tsquery, c_tsvector tsvector, c_uuid uuid, c_xml xml, c_int_arr integer[],
  c_text_arr text[], c_composite pair, c_enum mood`;

const VALUES = `
  9223372036854775807, B'1010', B'101', true, '((1,2),(3,4))', '\\x00ff10'::bytea,
  'ab', 'varchar "q"', '192.168.0.0/24', '<(1,2),3>', '2024-02-29',
  1.0000000000000002, '::1', -2147483648, '1 year 2 mons 3 days 04:05:06.789', '{"a": [1, 2]}',
  '{"b": {"c": null}}', '{1,2,3}', '[(0,0),(1,1)]', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05',
  '12.34', 3.14159265358979323846264338327950288, '[(0,0),(1,1),(2,0)]', '16/B374D848', '(1.5,2.5)',
  '((0,0),(1,1),(1,0))', 3.4028235e38, 32767, DEFAULT, DEFAULT, E'tab\\there\\nnewline \\\\ back ''quote'' ünïcødé',
  '23:59:59.999999', '12:00:00+05:30', '2024-01-01 12:34:56.123456', '2024-06-01 01:02:03.456789+02',
  'fat & rat', 'a fat cat sat', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '<x a="1">t</x>', '{1,NULL,3}',
  '{"a b","c,d","e\\"f",NULL,""}', ROW(1, 'x y'), 'happy'`;

async function prepare(sql: ReturnType<TestCluster["sql"]>, identity: string, key: boolean) {
  await sql.unsafe(`CREATE TYPE pair AS (n int, s text)`);
  await sql.unsafe(`CREATE TYPE mood AS ENUM ('sad', 'happy')`);
  await sql.unsafe(
    `CREATE TABLE types (id int ${key ? "PRIMARY KEY" : ""}, ${TYPE_COLUMNS})`,
  );
  if (identity) await sql.unsafe(`ALTER TABLE types REPLICA IDENTITY ${identity}`);
}

function config(c: TestCluster, srcDb: string, dstDb: string) {
  return {
    destination: { url: c.url(dstDb) },
    databases: [{
      database: srcDb,
      urls: [{ url: c.url(srcDb), sid: 1 }],
      tables: { types: null },
    }],
    apply: { commit_interval_ms: 50 },
    metrics: { listen: "" },
    log: { level: "info", format: "text" },
  };
}

/** Rows as text, compared column by column (text form of each value). */
function rows(sql: ReturnType<TestCluster["sql"]>) {
  return tableRows(
    sql,
    "types",
    `id, ${columnNames().map((c) => `${c}::text AS ${c}`).join(", ")}`,
  );
}

function columnNames(): string[] {
  return TYPE_COLUMNS.split(",").map((c) => c.trim().split(/\s+/)[0]);
}

async function roundTrip(c: TestCluster, identity: string, key: boolean): Promise<void> {
  const srcDb = await c.createDatabase("src");
  const dstDb = await c.createDatabase("dst");
  const src = c.sql(srcDb);
  const dst = c.sql(dstDb);
  await prepare(src, identity, key);
  await prepare(dst, "", key);
  await src.unsafe(`INSERT INTO types VALUES (1, ${VALUES})`);
  await src.unsafe(`INSERT INTO types (id) VALUES (2)`); // NULL in every column
  await using kvsz = KvszProcess.start([
    "run",
    "--config",
    await writeConfig(config(c, srcDb, dstDb)),
  ]);
  await waitForEqualRows(() => rows(src), () => rows(dst), { what: "initial copy", kvsz });

  await src.unsafe(`INSERT INTO types VALUES (3, ${VALUES})`);
  await src.unsafe(`INSERT INTO types (id) VALUES (4)`);
  await src.unsafe(`UPDATE types SET c_text = 'updated', c_json = '{"z": 1}' WHERE id = 3`);
  await src.unsafe(
    `UPDATE types SET (${columnNames().filter((n) => !n.includes("serial")).join(", ")}) =
       (SELECT ${
      columnNames().filter((n) => !n.includes("serial")).join(", ")
    } FROM types WHERE id = 1)
     WHERE id = 4`,
  );
  await src.unsafe(`UPDATE types SET c_point = NULL, c_xml = NULL WHERE id = 1`);
  await src.unsafe(`DELETE FROM types WHERE id = 2`);
  await waitForEqualRows(() => rows(src), () => rows(dst), { what: "streamed changes", kvsz });
  assert.equal(await kvsz.stop(), 0);
}

clusterSuite("kvsz run: data types and replica identity", {
  "every type round-trips, replica identity DEFAULT": (c) => roundTrip(c, "", true),
  "every type round-trips, replica identity FULL with a key": (c) => roundTrip(c, "FULL", true),
  "every type round-trips, replica identity FULL without a key": (c) => roundTrip(c, "FULL", false),
  "FULL without key: identical duplicate rows, update and delete touch exactly one": async (c) => {
    const srcDb = await c.createDatabase("src");
    const dstDb = await c.createDatabase("dst");
    const src = c.sql(srcDb);
    const dst = c.sql(dstDb);
    for (const sql of [src, dst]) {
      await sql.unsafe(`CREATE TABLE dup (a int, j json, p point)`);
    }
    await src.unsafe(`ALTER TABLE dup REPLICA IDENTITY FULL`);
    await src.unsafe(
      `INSERT INTO dup VALUES (1, '{"k":1}', '(1,1)'), (1, '{"k":1}', '(1,1)'), (1, '{"k":1}', '(1,1)'), (2, NULL, NULL)`,
    );
    const cfg = config(c, srcDb, dstDb);
    cfg.databases[0].tables = { dup: null } as never;
    await using kvsz = KvszProcess.start(["run", "--config", await writeConfig(cfg)]);
    const all = (sql: typeof src) => tableRows(sql, "dup", "a, j::text AS j, p::text AS p");
    await waitForEqualRows(() => all(src), () => all(dst), { kvsz });
    await src.unsafe(
      `UPDATE dup SET a = 10 WHERE ctid = (SELECT ctid FROM dup WHERE a = 1 LIMIT 1)`,
    );
    await src.unsafe(`DELETE FROM dup WHERE ctid = (SELECT ctid FROM dup WHERE a = 1 LIMIT 1)`);
    await src.unsafe(`UPDATE dup SET j = '{"k":2}' WHERE a = 2`);
    await waitForEqualRows(() => all(src), () => all(dst), { kvsz });
    const [n] = await dst.unsafe(`SELECT count(*)::int AS n FROM dup WHERE a = 1`);
    assert.equal(n.n, 1);
    assert.equal(await kvsz.stop(), 0);
  },
});
