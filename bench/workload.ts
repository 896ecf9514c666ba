/**
 * The tables of the benchmark: pgbench's four tables (made by `pgbench -i` on
 * the source; the same DDL on the destination, in clone, history or sid form),
 * a marker table (a row inserted after a load: once it is at the destination,
 * everything committed before it is too, since both engines apply in commit
 * order), a tick table for latency and the large-transaction tables.
 */
import type { Sql } from "./servers.ts";

/** The four pgbench tables with their key (pgbench_history has none: insert-only). */
export const PGBENCH_TABLES: { name: string; columns: string; key: string | null }[] = [
  {
    name: "pgbench_accounts",
    columns: "aid integer NOT NULL, bid integer, abalance integer, filler character(84)",
    key: "aid",
  },
  {
    name: "pgbench_branches",
    columns: "bid integer NOT NULL, bbalance integer, filler character(88)",
    key: "bid",
  },
  {
    name: "pgbench_tellers",
    columns: "tid integer NOT NULL, bid integer, tbalance integer, filler character(84)",
    key: "tid",
  },
  {
    name: "pgbench_history",
    columns:
      "tid integer, bid integer, aid integer, delta integer, mtime timestamp without time zone, filler character(22)",
    key: null,
  },
];

/** Extra source tables (created once after `pgbench -i`). */
export const EXTRA_SOURCE_DDL = [
  `CREATE TABLE bench_marker (id bigint PRIMARY KEY, note text)`,
  `CREATE TABLE bench_tick (id bigint PRIMARY KEY)`,
  `CREATE TABLE bench_large_kvsz (id bigint PRIMARY KEY, v integer, s text)`,
  `CREATE TABLE bench_large_native (id bigint PRIMARY KEY, v integer, s text)`,
];

/** Large-transaction table of an engine (each engine publishes only its own). */
export function largeTable(engine: "kvsz" | "native"): string {
  return `bench_large_${engine}`;
}

/** Destination table shapes. */
export type TargetForm = "clone" | "history" | "sid";

const HISTORY_COLS = "kvsz_start timestamptz NOT NULL, kvsz_end timestamptz NOT NULL, " +
  "kvsz_deleted boolean NOT NULL";

/** Destination DDL of the pgbench tables plus marker, tick and (optionally) a large table. */
export function destinationDdl(form: TargetForm, large: string | null): string[] {
  const out: string[] = [];
  for (const t of PGBENCH_TABLES) {
    if (form === "clone") {
      out.push(
        `CREATE TABLE ${t.name} (${t.columns}${t.key ? `, PRIMARY KEY (${t.key})` : ""})`,
      );
    } else if (form === "history") {
      // The key leads the primary key, so the current version of a key is found by index.
      out.push(
        `CREATE TABLE ${t.name} (${t.columns}, ${HISTORY_COLS}${
          t.key ? `, PRIMARY KEY (${t.key}, kvsz_start)` : ""
        })`,
      );
    } else {
      out.push(
        `CREATE TABLE ${t.name} (sid text NOT NULL, ${t.columns}${
          t.key ? `, PRIMARY KEY (sid, ${t.key})` : ""
        })`,
      );
    }
  }
  const sid = form === "sid" ? "sid text NOT NULL, " : "";
  const sidKey = form === "sid" ? "sid, " : "";
  out.push(`CREATE TABLE bench_marker (${sid}id bigint, note text, PRIMARY KEY (${sidKey}id))`);
  // dst_ts: when the engine wrote the row (the source does not have this column).
  out.push(
    `CREATE TABLE bench_tick (${sid}id bigint, dst_ts timestamptz DEFAULT clock_timestamp(), PRIMARY KEY (${sidKey}id))`,
  );
  if (large) out.push(`CREATE TABLE ${large} (id bigint PRIMARY KEY, v integer, s text)`);
  return out;
}

/** Source tables an engine replicates (pgbench's, marker, tick, and its large table). */
export function replicatedTables(large: string | null): string[] {
  return [
    ...PGBENCH_TABLES.map((t) => t.name),
    "bench_marker",
    "bench_tick",
    ...(large ? [large] : []),
  ];
}

let markerSeq = 0;

/** Inserts a new marker row on the source; returns its id. */
export async function insertMarker(source: Sql, note: string): Promise<number> {
  const id = ++markerSeq;
  await source.unsafe(`INSERT INTO bench_marker (id, note) VALUES ($1, $2)`, [id, note]);
  return id;
}

/** Inserts marker `id` (several sources share one id in fan-in). */
export async function insertMarkerId(source: Sql, id: number, note: string): Promise<void> {
  await source.unsafe(`INSERT INTO bench_marker (id, note) VALUES ($1, $2)`, [id, note]);
}

/** A fresh marker id (for inserting the same id into several sources). */
export function nextMarkerId(): number {
  return ++markerSeq;
}

/** How many destination rows carry marker `id`. */
export async function markerCount(dest: Sql, id: number): Promise<number> {
  const [r] = await dest.unsafe(`SELECT count(*)::int AS n FROM bench_marker WHERE id = $1`, [id]);
  return r.n;
}

/**
 * Counts and sums of the pgbench tables, comparable between source and
 * destination: the current versions in history form, one sid's rows in sid form.
 */
export async function pgbenchDigest(
  sql: Sql,
  form: TargetForm | "source",
  sid?: string,
): Promise<string> {
  const where = form === "history"
    ? `WHERE kvsz_end = '9999-01-01' AND NOT kvsz_deleted`
    : form === "sid"
    ? `WHERE sid = '${sid!.replaceAll("'", "''")}'`
    : "";
  const [r] = await sql.unsafe(`SELECT
      (SELECT count(*) || '/' || coalesce(sum(abalance), 0) FROM pgbench_accounts ${where}) AS a,
      (SELECT count(*) || '/' || coalesce(sum(bbalance), 0) FROM pgbench_branches ${where}) AS b,
      (SELECT count(*) || '/' || coalesce(sum(tbalance), 0) FROM pgbench_tellers ${where}) AS t,
      (SELECT count(*) || '/' || coalesce(sum(delta), 0) FROM pgbench_history ${where}) AS h`);
  return `accounts ${r.a}, branches ${r.b}, tellers ${r.t}, history ${r.h}`;
}

/** Total rows in the pgbench tables of a database (all versions in history form). */
export async function pgbenchRowCount(sql: Sql): Promise<number> {
  const [r] = await sql.unsafe(`SELECT
      (SELECT count(*) FROM pgbench_accounts) + (SELECT count(*) FROM pgbench_branches) +
      (SELECT count(*) FROM pgbench_tellers) + (SELECT count(*) FROM pgbench_history) AS n`);
  return Number(r.n);
}

/** Empties the source's insert-only and bench tables and vacuums (before a round; no slot exists). */
export async function resetSourceTables(source: Sql, withLarge: boolean): Promise<void> {
  const tables = ["pgbench_history", "bench_marker", "bench_tick"];
  if (withLarge) tables.push(largeTable("kvsz"), largeTable("native"));
  await source.unsafe(`TRUNCATE ${tables.join(", ")}`);
  await source.unsafe(
    `VACUUM ANALYZE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history`,
  );
}
