/**
 * Where an initial copy lands. A first sync copies straight into the target.
 * A re-sync (the slot was lost, a table comes back to the config, or a table
 * stopped for column drift was fixed) must never double rows nor erase what
 * the mode keeps, so the copy lands in a staging table and is merged: clone
 * with `sid` replaces that sid's rows; clone without `sid` upserts by key and,
 * when no other source of the config writes the target, deletes the rows the
 * copy lacks (without a key: replaces every row); append upserts by key;
 * history adds a version for each changed row and closes the current version
 * of each vanished row.
 */
import type { Sql } from "../pg/connect.ts";
import { qualify, quoteIdent, quoteLiteral } from "../pg/identifiers.ts";
import type { TableMode } from "../config/types.ts";
import type { TargetTable } from "./types.ts";
import { KVSZ_COLUMNS } from "./catalog.ts";

/** A place to COPY into, and what to do after the copy. */
export interface CopySink {
  /** Qualified table name for `COPY … FROM STDIN`. */
  table: string;
  /** Merges the staged rows into the target (no-op for a plain copy). */
  finish(): Promise<void>;
}

/** What the destination side of one table's copy needs to know. */
export interface ResyncTarget {
  target: TargetTable;
  mode: TableMode;
  /** The target already holds rows from this source. */
  resync: boolean;
  /** Data columns the copy fills (no sid, no kvsz_*). */
  columns: string[];
  /** Columns identifying a row at the source (its replica identity key); may be empty. */
  sourceKey: string[];
  /** No other source of the config writes the target (a clone target without sid is this source's). */
  exclusive: boolean;
}

let stageCounter = 0;

/** Prepares the copy of one table inside destination transaction `tx`. */
export async function prepareResync(
  tx: Sql,
  job: ResyncTarget,
  sid: string,
): Promise<CopySink> {
  const { target, mode } = job;
  const table = qualify(target.schema, target.name);
  if (!job.resync) return { table, finish: async () => {} };
  const sidCond = (alias: string) =>
    target.hasSid ? ` AND ${alias}.sid = ${quoteLiteral(sid)}` : "";
  if (mode === "clone" && target.hasSid) {
    await tx.unsafe(`DELETE FROM ${table} WHERE sid = $1`, [sid]);
    return { table, finish: async () => {} };
  }
  const cols = job.columns;
  // The source's key when the copy carries it, else the target's primary key.
  const key = job.sourceKey.length > 0 && job.sourceKey.every((c) => cols.includes(c))
    ? job.sourceKey
    : target.primaryKey.filter((c) => !KVSZ_COLUMNS.has(c));
  // This source's own clone: rows cannot be matched without a key, so all are replaced.
  const replaceAll = mode === "clone" && job.exclusive && key.length === 0;
  if (replaceAll) {
    await tx.unsafe(`DELETE FROM ${table}`);
    return { table, finish: async () => {} };
  }
  const stage = `kvsz_stage_${++stageCounter}`;
  await tx.unsafe(
    `CREATE TEMP TABLE ${stage} ON COMMIT DROP AS SELECT * FROM ${table} WITH NO DATA`,
  );
  const keyMatch = key.length
    ? key.map((k) => `t.${quoteIdent(k)} = s.${quoteIdent(k)}`).join(" AND ")
    : "true";
  const rowOf = (alias: string) =>
    `ROW(${cols.map((c) => `${alias}.${quoteIdent(c)}`).join(", ")})::text`;
  const sameRow = `${keyMatch} AND ${rowOf("t")} = ${rowOf("s")}`;
  const insertCols = [...cols, ...(target.hasSid ? ["sid"] : [])].map(quoteIdent).join(", ");
  const selectCols = [...cols, ...(target.hasSid ? ["sid"] : [])].map((c) => `s.${quoteIdent(c)}`)
    .join(", ");

  const finish = async () => {
    if (mode === "history") {
      const current = `t.kvsz_end = '9999-01-01'${sidCond("t")}`;
      // Without sid, other sources may share the target: close only rows this source changed.
      const scope = target.hasSid || job.exclusive
        ? ""
        : key.length === 0
        ? " AND false"
        : ` AND EXISTS (SELECT 1 FROM ${stage} s WHERE ${keyMatch})`;
      const vanished = key.length
        ? `NOT EXISTS (SELECT 1 FROM ${stage} s WHERE ${keyMatch})`
        : "true";
      await tx.unsafe(
        `UPDATE ${table} t SET kvsz_end = now(), kvsz_deleted = ${vanished}
          WHERE ${current}${scope}
            AND NOT EXISTS (SELECT 1 FROM ${stage} s WHERE ${sameRow})`,
      );
      await tx.unsafe(
        `INSERT INTO ${table} (${insertCols}, kvsz_start, kvsz_end, kvsz_deleted)
         SELECT ${selectCols}, now(), '9999-01-01', false FROM ${stage} s
          WHERE NOT EXISTS (SELECT 1 FROM ${table} t WHERE ${current} AND ${sameRow})`,
      );
      return;
    }
    if (key.length > 0 && cols.some((c) => !key.includes(c))) {
      const set = cols.filter((c) => !key.includes(c)).map((c) =>
        `${quoteIdent(c)} = s.${quoteIdent(c)}`
      ).join(", ");
      await tx.unsafe(
        `UPDATE ${table} t SET ${set} FROM ${stage} s WHERE ${keyMatch}${sidCond("t")}`,
      );
    }
    const exists = key.length ? keyMatch : sameRow;
    await tx.unsafe(
      `INSERT INTO ${table} (${insertCols}) SELECT ${selectCols} FROM ${stage} s
        WHERE NOT EXISTS (SELECT 1 FROM ${table} t WHERE ${exists}${sidCond("t")})`,
    );
    if (mode === "clone" && job.exclusive) {
      // Deleted at the source while the table was not streamed: an identical copy drops them too.
      await tx.unsafe(
        `DELETE FROM ${table} t WHERE NOT EXISTS (SELECT 1 FROM ${stage} s WHERE ${keyMatch})`,
      );
    }
  };
  return { table: stage, finish };
}
