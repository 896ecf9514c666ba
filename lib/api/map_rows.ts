/**
 * The table map as kuvasz-streamer's API shows it: databases (`db`), their
 * source URLs (`url`) and mapped tables (`tbl`), each with a numeric id. In
 * declarative mode the ids are positions in the config (1, 2, …); in database
 * mode they are the store's keys. Also the way back: the `databases:` list a
 * set of rows stands for, to be checked by the config validator.
 */
import type { DatabaseMapping, TableMode } from "../config/types.ts";
import { redactUrl } from "../pg/redact.ts";

/** A database entry (kuvasz `db`). */
export interface DbRow {
  id: number;
  name: string;
  /** The entry's `discover` block as written (database mode keeps it), or null. */
  discover?: Record<string, unknown> | null;
  /** The entry's `all_tables` block as written (database mode keeps it), or null. */
  all_tables?: Record<string, unknown> | null;
}

/** A source URL (kuvasz `url`); `url` holds the password: serve it through {@link publicUrl}. */
export interface UrlRow {
  id: number;
  db_id: number;
  sid: string;
  url: string;
  failover?: boolean;
}

/** A mapped table (kuvasz `tbl`); `name` is the source table as the config writes it. */
export interface TblRow {
  id: number;
  db_id: number;
  name: string;
  type: TableMode;
  target: string;
  partitions_regex: string | null;
  /** `on_column_drift` when the table sets its own, else null. */
  on_column_drift?: string | null;
}

/** The whole map. */
export interface MapRows {
  dbs: DbRow[];
  urls: UrlRow[];
  tbls: TblRow[];
}

/** The map of a config's (expanded) database entries, numbered by position from 1. */
export function rowsOfConfig(databases: readonly DatabaseMapping[]): MapRows {
  const rows: MapRows = { dbs: [], urls: [], tbls: [] };
  databases.forEach((db, i) => {
    const dbId = i + 1;
    rows.dbs.push({ id: dbId, name: db.database });
    for (const u of db.urls) {
      rows.urls.push({ id: rows.urls.length + 1, db_id: dbId, sid: u.sid, url: u.url });
    }
    for (const t of db.tables) {
      rows.tbls.push({
        id: rows.tbls.length + 1,
        db_id: dbId,
        name: t.source,
        type: t.mode,
        target: t.target,
        partitions_regex: t.partitionsRegex ?? null,
      });
    }
  });
  return rows;
}

/** A URL row as served: the password replaced by `***`. */
export function publicUrl(row: UrlRow): { id: number; db_id: number; sid: string; url: string } {
  return { id: row.id, db_id: row.db_id, sid: row.sid, url: redactUrl(row.url) };
}

/** A table row as served, with its source schema. */
export function publicTbl(row: TblRow): TblRow & { schema: string } {
  const dot = row.name.indexOf(".");
  return {
    id: row.id,
    db_id: row.db_id,
    schema: dot < 0 ? "public" : row.name.slice(0, dot),
    name: row.name,
    type: row.type,
    target: row.target,
    partitions_regex: row.partitions_regex,
  };
}

/**
 * The `databases:` list `rows` stand for, in the config file's shape (URLs
 * as stored: `${VAR}` is expanded by the validator). An entry without tables
 * is left out (the validator requires some); so is a URL of no entry.
 */
export function databasesOfRows(rows: MapRows): Record<string, unknown>[] {
  return rows.dbs.flatMap((db) => {
    const tables = rows.tbls.filter((t) => t.db_id === db.id);
    if (tables.length === 0 && !db.all_tables) return [];
    const urls = rows.urls.filter((u) => u.db_id === db.id).map((u) => ({
      url: u.url,
      sid: u.sid,
      ...(u.failover ? { failover: true } : {}),
    }));
    return [{
      database: db.name,
      ...(urls.length > 0 || !db.discover ? { urls } : {}),
      ...(db.discover ? { discover: db.discover } : {}),
      ...(db.all_tables ? { all_tables: db.all_tables } : {}),
      tables: Object.fromEntries(tables.map((t) => [t.name, {
        type: t.type,
        ...(t.target !== "" && t.target !== t.name.split(".").pop() ? { target: t.target } : {}),
        ...(t.partitions_regex ? { partitions_regex: t.partitions_regex } : {}),
        ...(t.on_column_drift ? { on_column_drift: t.on_column_drift } : {}),
      }])),
    }];
  });
}

/**
 * The map of a config file's `databases:` list as written (plain YAML
 * values: URLs keep their `${VAR}`), numbered by position from 1: what
 * database mode imports at its first start.
 */
export function rowsOfDocument(list: unknown): MapRows {
  const rows: MapRows = { dbs: [], urls: [], tbls: [] };
  if (!Array.isArray(list)) return rows;
  const object = (v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v) ? v as Record<string, unknown> : null;
  list.forEach((value, i) => {
    const db = object(value);
    if (!db) return;
    const dbId = i + 1;
    rows.dbs.push({
      id: dbId,
      name: String(db.database ?? ""),
      discover: object(db.discover),
      all_tables: object(db.all_tables),
    });
    for (const u of Array.isArray(db.urls) ? db.urls : []) {
      const url = object(u);
      if (!url) continue;
      rows.urls.push({
        id: rows.urls.length + 1,
        db_id: dbId,
        sid: String(url.sid ?? ""),
        url: String(url.url ?? ""),
        failover: url.failover === true,
      });
    }
    for (const [name, options] of Object.entries(object(db.tables) ?? {})) {
      const t = object(options) ?? {};
      rows.tbls.push({
        id: rows.tbls.length + 1,
        db_id: dbId,
        name,
        type: (t.type ?? "clone") as TableMode,
        target: String(t.target ?? name.split(".").pop()),
        partitions_regex: typeof t.partitions_regex === "string" ? t.partitions_regex : null,
        on_column_drift: typeof t.on_column_drift === "string" ? t.on_column_drift : null,
      });
    }
  });
  return rows;
}
