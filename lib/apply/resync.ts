/**
 * Where an initial copy lands. A first sync copies straight into the target.
 * A re-sync (the slot was lost or could not be trusted, or a table comes back
 * to the config) must never double rows nor erase what the mode keeps, so:
 * clone with `sid` replaces that sid's rows, and so does clone without `sid`
 * when the whole source is copied again and no other source writes the
 * target (every row is the source's); otherwise the copy lands in a staging
 * table and is merged: clone and append upsert by key; history adds a version
 * for each changed row and closes the current version of each vanished row
 * (without `sid`, unless every row is the source's, only of rows this source
 * changed).
 */
import type { Sql } from "../pg/connect.ts";
import { qualify, quoteIdent, quoteLiteral } from "../pg/identifiers.ts";
import type { TableMode } from "../config/types.ts";
import type { TargetTable } from "./types.ts";
import { KVSZ_COLUMNS } from "./routes.ts";

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
  /**
   * Every row of the target is this source's to replace: the whole source is
   * copied again (its slot was lost) and no other source writes the target.
   */
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
  /** Every row of the target (of its sid, when it has one) is this source's. */
  const own = target.hasSid || job.exclusive;
  if (mode === "clone" && own) {
    if (target.hasSid) await tx.unsafe(`DELETE FROM ${table} WHERE sid = $1`, [sid]);
    else await tx.unsafe(`DELETE FROM ${table}`);
    return { table, finish: async () => {} };
  }
  const stage = `kvsz_stage_${++stageCounter}`;
  await tx.unsafe(
    `CREATE TEMP TABLE ${stage} ON COMMIT DROP AS SELECT * FROM ${table} WITH NO DATA`,
  );
  const cols = job.columns;
  // The source's key when the copy carries it, else the target's primary key.
  const key = job.sourceKey.length > 0 && job.sourceKey.every((c) => cols.includes(c))
    ? job.sourceKey
    : target.primaryKey.filter((c) => !KVSZ_COLUMNS.has(c));
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
      // Without sid, rows of other sources may be there: close only rows this source changed.
      const scope = own
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
  };
  return { table: stage, finish };
}
