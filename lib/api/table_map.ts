/**
 * kuvasz-streamer's `/api/map`: every table of every database entry's first
 * source, whether it is mapped (`replicated`) and whether its target exists
 * at the destination (`present`), numbered from 0 in (database, table) order.
 */
import type { Config } from "../config/types.ts";
import { connect } from "../pg/connect.ts";
import { describeError } from "../pg/describe.ts";
import { log } from "../log.ts";
import { readInventory } from "../source/all_tables.ts";
import type { MapRows } from "./map_rows.ts";
import { interpolate } from "../config/interpolate.ts";

/** One source table in the map. */
export interface MapEntry {
  id: number;
  db_id: number;
  db_name: string;
  schema: string;
  name: string;
  /** The mapping's mode, or "" when not replicated. */
  type: string;
  /** The mapping's target, or "" when not replicated. */
  target: string;
  partitions_regex: string | null;
  replicated: boolean;
  present: boolean;
}

/** Reads the map of `rows` (ids and mappings) over the sources and destination of `config`. */
export async function readTableMap(config: Config, rows: MapRows): Promise<MapEntry[]> {
  const found: Omit<MapEntry, "id">[] = [];
  const dest = connect(config.destination.url, { connectTimeout: 10, max: 1 });
  try {
    const targets = new Set(
      (await dest.unsafe(
        `SELECT n.nspname AS schema, c.relname AS name
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p')`,
      )).map((r) => `${r.schema}.${r.name}`),
    );
    for (const db of rows.dbs) {
      // An entry without tables yet is not in the config: its URL is the store's.
      const entry = config.databases.find((d) => d.database === db.name);
      const stored = rows.urls.find((u) => u.db_id === db.id)?.url;
      const url = entry?.urls[0]?.url ??
        (stored && interpolate(stored, Deno.env.toObject()).value);
      if (!url) continue;
      const sql = connect(url, { connectTimeout: 10, max: 1 });
      try {
        const inventory = await readInventory(sql, { exclude: [], schemas: [], mode: "clone" });
        for (const t of inventory.tables) {
          const mapping = entry?.tables.find((m) =>
            m.sourceSchema === t.schema && m.sourceName === t.name
          );
          const schema = mapping?.targetSchema ?? config.destination.schema;
          found.push({
            db_id: db.id,
            db_name: db.name,
            schema: t.schema,
            name: t.name,
            type: mapping?.mode ?? "",
            target: mapping?.target ?? "",
            partitions_regex: mapping?.partitionsRegex ?? null,
            replicated: mapping !== undefined,
            present: targets.has(`${schema}.${mapping?.target ?? t.name}`),
          });
        }
      } catch (e) {
        log("api").warn("map: cannot read the tables of {database}: {error}", {
          database: db.name,
          error: describeError(e),
        });
      } finally {
        await sql.end({ timeout: 2 }).catch(() => {});
      }
    }
  } finally {
    await dest.end({ timeout: 2 }).catch(() => {});
  }
  found.sort((a, b) =>
    a.db_id - b.db_id || `${a.schema}.${a.name}`.localeCompare(`${b.schema}.${b.name}`)
  );
  return found.map((e, id) => ({ id, ...e }));
}
