/**
 * Database mode (`map_store: destination`): the table map in the
 * destination's `kvsz` schema (`map_db`, `map_url`, `map_tbl`), so that it
 * outlives a container without a volume and every instance of a sharded
 * deployment shares it. The first start imports the config file's map. Every
 * change is a transaction that also writes `map_changes` (who, when, what).
 */
import { connect, type Sql } from "../pg/connect.ts";
import type { TableMode } from "../config/types.ts";
import type { DbRow, MapRows, TblRow, UrlRow } from "./map_rows.ts";

/** A connection or a transaction: what the queries need. */
type Q = Pick<Sql, "unsafe">;

const SCHEMA = [
  `CREATE SCHEMA IF NOT EXISTS kvsz`,
  `CREATE TABLE IF NOT EXISTS kvsz.map_db (
     db_id bigserial PRIMARY KEY,
     name text NOT NULL UNIQUE,
     discover jsonb,
     all_tables jsonb)`,
  `CREATE TABLE IF NOT EXISTS kvsz.map_url (
     url_id bigserial PRIMARY KEY,
     db_id bigint NOT NULL REFERENCES kvsz.map_db,
     sid text NOT NULL,
     url text NOT NULL,
     failover boolean NOT NULL DEFAULT false,
     UNIQUE (db_id, sid))`,
  `CREATE TABLE IF NOT EXISTS kvsz.map_tbl (
     tbl_id bigserial PRIMARY KEY,
     db_id bigint NOT NULL REFERENCES kvsz.map_db,
     name text NOT NULL,
     type text NOT NULL,
     target text NOT NULL,
     partitions_regex text,
     on_column_drift text,
     UNIQUE (db_id, name))`,
  `CREATE TABLE IF NOT EXISTS kvsz.map_changes (
     change_id bigserial PRIMARY KEY,
     at timestamptz NOT NULL DEFAULT now(),
     who text NOT NULL,
     what text NOT NULL,
     detail jsonb)`,
];

/** One row of the change log. */
export interface MapChange {
  id: number;
  at: string;
  who: string;
  what: string;
  detail: unknown;
}

/** The map's tables in the destination. */
export class MapStore {
  readonly #sql: Sql;

  private constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** Connects to the destination and creates the map's tables when missing. */
  static async open(destinationUrl: string): Promise<MapStore> {
    const sql = connect(destinationUrl, { connectTimeout: 10, max: 2, idleTimeout: 30 });
    try {
      await sql.begin(async (tx) => {
        await tx.unsafe(`SELECT pg_advisory_xact_lock(hashtext('kvsz.map_store'))`);
        for (const statement of SCHEMA) await tx.unsafe(statement);
      });
    } catch (e) {
      await sql.end({ timeout: 2 }).catch(() => {});
      throw e;
    }
    return new MapStore(sql);
  }

  /** Closes the store's connections. */
  async close(): Promise<void> {
    await this.#sql.end({ timeout: 2 }).catch(() => {});
  }

  /**
   * Imports `rows` (the config file's map) when the store has never been
   * written (no change logged); true when it did.
   */
  async importOnce(rows: MapRows, file: string): Promise<boolean> {
    return await this.#sql.begin(async (tx) => {
      await tx.unsafe(`LOCK kvsz.map_changes IN EXCLUSIVE MODE`);
      const [{ n }] = await tx.unsafe(`SELECT count(*)::int AS n FROM kvsz.map_changes`);
      if (n > 0) return false;
      const ids = new Map<number, number>();
      for (const db of rows.dbs) ids.set(db.id, await insertDb(tx, db));
      for (const u of rows.urls) await insertUrl(tx, { ...u, db_id: ids.get(u.db_id)! });
      for (const t of rows.tbls) await insertTbl(tx, { ...t, db_id: ids.get(t.db_id)! });
      await logChange(tx, "kvsz", "import", { file, databases: rows.dbs.map((d) => d.name) });
      return true;
    }) as boolean;
  }

  /** The whole map. */
  read(): Promise<MapRows> {
    return readRows(this.#sql);
  }

  /** The id of the last change (0: none): another instance's change shows here. */
  async lastChange(): Promise<number> {
    const [{ id }] = await this.#sql.unsafe(
      `SELECT coalesce(max(change_id), 0)::int8 AS id FROM kvsz.map_changes`,
    );
    return Number(id);
  }

  /** The last `limit` changes, newest first. */
  async changes(limit = 100): Promise<MapChange[]> {
    const rows = await this.#sql.unsafe(
      `SELECT change_id::int8 AS id, at::text AS at, who, what, detail
         FROM kvsz.map_changes ORDER BY change_id DESC LIMIT $1`,
      [limit],
    );
    return rows.map((r) => ({
      id: Number(r.id),
      at: String(r.at),
      who: String(r.who),
      what: String(r.what),
      detail: r.detail,
    }));
  }

  /**
   * Runs `change` in a transaction, logs it as `what` by `who`, and commits
   * only when `check` accepts the map it leaves (it throws otherwise).
   */
  async change<T>(
    who: string,
    what: string,
    change: (tx: MapTx) => Promise<T>,
    check: (rows: MapRows) => void | Promise<void>,
  ): Promise<T> {
    return await this.#sql.begin(async (tx) => {
      await tx.unsafe(`LOCK kvsz.map_changes IN EXCLUSIVE MODE`);
      const result = await change(new MapTx(tx));
      await check(await readRows(tx));
      await logChange(tx, who, what, result ?? null);
      return result;
    }) as T;
  }
}

/** The writes of one change. */
export class MapTx {
  constructor(readonly sql: Q) {}

  /** Adds a database entry; its new id. */
  addDb(db: Omit<DbRow, "id">): Promise<number> {
    return insertDb(this.sql, { id: 0, ...db });
  }

  /** Adds a URL; its new id. */
  addUrl(u: Omit<UrlRow, "id">): Promise<number> {
    return insertUrl(this.sql, { id: 0, ...u });
  }

  /** Adds a table; its new id. */
  addTbl(t: Omit<TblRow, "id">): Promise<number> {
    return insertTbl(this.sql, { id: 0, ...t });
  }

  /** Updates a row's columns; false when there is no such row. */
  async update(
    kind: "db" | "url" | "tbl",
    id: number,
    values: Record<string, string | boolean | null>,
  ): Promise<boolean> {
    const names = Object.keys(values);
    if (names.length === 0) return (await this.sql.unsafe(SELECT_ONE[kind], [id])).length > 0;
    const sets = names.map((n, i) => `${n} = $${i + 2}`).join(", ");
    const rows = await this.sql.unsafe(
      `UPDATE kvsz.map_${kind} SET ${sets} WHERE ${kind}_id = $1 RETURNING 1`,
      [id, ...Object.values(values)],
    );
    return rows.length > 0;
  }

  /** Deletes a row; false when there is no such row. */
  async delete(kind: "db" | "url" | "tbl", id: number): Promise<boolean> {
    const rows = await this.sql.unsafe(
      `DELETE FROM kvsz.map_${kind} WHERE ${kind}_id = $1 RETURNING 1`,
      [id],
    );
    return rows.length > 0;
  }
}

const SELECT_ONE = {
  db: `SELECT 1 FROM kvsz.map_db WHERE db_id = $1`,
  url: `SELECT 1 FROM kvsz.map_url WHERE url_id = $1`,
  tbl: `SELECT 1 FROM kvsz.map_tbl WHERE tbl_id = $1`,
};

async function readRows(sql: Q): Promise<MapRows> {
  const [dbs, urls, tbls] = await Promise.all([
    sql.unsafe(`SELECT db_id::int8 AS id, name, discover, all_tables FROM kvsz.map_db
                 ORDER BY db_id`),
    sql.unsafe(`SELECT url_id::int8 AS id, db_id::int8 AS db_id, sid, url, failover
                  FROM kvsz.map_url ORDER BY url_id`),
    sql.unsafe(`SELECT tbl_id::int8 AS id, db_id::int8 AS db_id, name, type, target,
                       partitions_regex, on_column_drift FROM kvsz.map_tbl ORDER BY tbl_id`),
  ]);
  return {
    dbs: dbs.map((r) => ({
      id: Number(r.id),
      name: String(r.name),
      discover: r.discover ?? null,
      all_tables: r.all_tables ?? null,
    })),
    urls: urls.map((r) => ({
      id: Number(r.id),
      db_id: Number(r.db_id),
      sid: String(r.sid),
      url: String(r.url),
      failover: Boolean(r.failover),
    })),
    tbls: tbls.map((r) => ({
      id: Number(r.id),
      db_id: Number(r.db_id),
      name: String(r.name),
      type: String(r.type) as TableMode,
      target: String(r.target),
      partitions_regex: r.partitions_regex ?? null,
      on_column_drift: r.on_column_drift ?? null,
    })),
  };
}

async function insertDb(sql: Q, db: DbRow): Promise<number> {
  const [r] = await sql.unsafe(
    `INSERT INTO kvsz.map_db (name, discover, all_tables)
     VALUES ($1, $2::text::jsonb, $3::text::jsonb) RETURNING db_id::int8 AS id`,
    [
      db.name,
      db.discover ? JSON.stringify(db.discover) : null,
      db.all_tables ? JSON.stringify(db.all_tables) : null,
    ],
  );
  return Number(r.id);
}

async function insertUrl(sql: Q, u: UrlRow): Promise<number> {
  const [r] = await sql.unsafe(
    `INSERT INTO kvsz.map_url (db_id, sid, url, failover) VALUES ($1, $2, $3, $4)
     RETURNING url_id::int8 AS id`,
    [u.db_id, u.sid, u.url, u.failover ?? false],
  );
  return Number(r.id);
}

async function insertTbl(sql: Q, t: TblRow): Promise<number> {
  const [r] = await sql.unsafe(
    `INSERT INTO kvsz.map_tbl (db_id, name, type, target, partitions_regex, on_column_drift)
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING tbl_id::int8 AS id`,
    [t.db_id, t.name, t.type, t.target, t.partitions_regex, t.on_column_drift ?? null],
  );
  return Number(r.id);
}

async function logChange(sql: Q, who: string, what: string, detail: unknown): Promise<void> {
  await sql.unsafe(
    `INSERT INTO kvsz.map_changes (who, what, detail) VALUES ($1, $2, $3::text::jsonb)`,
    [who, what, JSON.stringify(detail)],
  );
}
