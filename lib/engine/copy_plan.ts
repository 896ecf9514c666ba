/**
 * What one table's initial copy reads and writes: per source relation the
 * columns both sides share, whether COPY may use the binary format, and the
 * `COPY` statements (optionally for one range of heap pages).
 */
import type { Sql } from "../pg/connect.ts";
import { qualify, quoteIdent, quoteLiteral } from "../pg/identifiers.ts";
import type { TableMode } from "../config/types.ts";
import type { TargetTable } from "../apply/types.ts";
import { KVSZ_COLUMNS } from "../apply/catalog.ts";
import { type QualifiedName, readSourceTable } from "../source/catalog.ts";
import type { CopyStatements } from "../source/copy_pipe.ts";
import type { TableMapping } from "../config/types.ts";
import type { TableTransform } from "../transform/table_transform.ts";
import { copyRowMapper } from "../transform/copy_rows.ts";
import { compileMappingTransform } from "../apply/transform_route.ts";
import { heldNote, LineBudget, log } from "../log.ts";

/** One source relation of a table's copy (a partitioned table's leaves are read by its root). */
export interface CopyPart {
  rel: QualifiedName;
  kind: "table" | "partitioned";
  /** Source columns that the target has too (no sid, no kvsz_*). */
  columns: string[];
  /** Every column of the source relation. */
  sourceColumns: string[];
  /** The source's replica identity key, else its primary key; may be empty. */
  key: string[];
  /** Planner's row estimate. */
  estimate: number;
  /** Every copied column has the same built-in type on both sides: COPY in binary. */
  binary: boolean;
  /**
   * The table's `filter` and `set`: the source SELECT reads every column of
   * `sourceColumns`, each row is run through it, and `columns` are written.
   */
  transform?: { table: TableTransform; keep: number[]; label: string };
}

/** Options of {@link planParts}: the mapping (for its `filter` and `set`) and the source. */
export interface PlanOptions {
  mapping: TableMapping;
  database: string;
  sid: string;
}

/** A range of heap pages: `ctid >= (from,0)` and, unless open-ended, `ctid < (to,0)`. */
export interface PageRange {
  from: number;
  to: number | null;
}

/** Reads the source catalog (in the snapshot transaction) for every relation of a table's copy. */
export async function planParts(
  source: Sql,
  copied: QualifiedName[],
  target: TargetTable,
  opts?: PlanOptions,
): Promise<CopyPart[]> {
  const parts: CopyPart[] = [];
  for (const rel of copied) {
    const table = await readSourceTable(source, rel.schema, rel.name);
    if (!table) throw new Error(`source table ${rel.schema}.${rel.name} vanished during sync`);
    const shared = table.columns.filter((c) =>
      target.columns.has(c.name) && !KVSZ_COLUMNS.has(c.name)
    );
    const [est] = await source.unsafe(
      `SELECT GREATEST(reltuples, 0)::int8 AS n FROM pg_class WHERE oid = $1::int8::oid`,
      [table.oid],
    );
    const transform = opts && compileMappingTransform(opts.mapping, table.columns, target, {
      database: opts.database,
      sid: opts.sid,
      keyNames: table.identityColumns,
    });
    if (transform) {
      parts.push({
        rel,
        kind: table.kind,
        columns: transform.outputs?.map((o) => o.name) ?? shared.map((c) => c.name),
        sourceColumns: table.columns.map((c) => c.name),
        key: table.identityColumns.length ? table.identityColumns : table.primaryKey,
        estimate: Number(est?.n ?? 0),
        binary: false,
        transform: {
          table: transform,
          keep: shared.map((c) => table.columns.indexOf(c)),
          label: `${rel.schema}.${rel.name}`,
        },
      });
      continue;
    }
    parts.push({
      rel,
      kind: table.kind,
      columns: shared.map((c) => c.name),
      sourceColumns: table.columns.map((c) => c.name),
      key: table.identityColumns.length ? table.identityColumns : table.primaryKey,
      estimate: Number(est?.n ?? 0),
      binary: shared.every((c) => sameBinaryType(c.typeOid, target.columns.get(c.name)!.typeOid)),
    });
  }
  return parts;
}

/** Options of {@link copyStatements}. */
export interface CopyStatementOptions {
  /** The table's mode (history adds its bound columns). */
  mode: TableMode;
  /** The source's sid, written when the target has a `sid` column. */
  sid: string;
  /** The table the rows go into: the target, or a re-sync's staging table. */
  sinkTable: string;
  /** The pages to copy; null for all of them. */
  range: PageRange | null;
  /** Called for each row whose filter or set failed (counted as an anomaly of the table). */
  onExpressionError?: (table: string, key: (string | null)[]) => void;
}

/** The `COPY … TO STDOUT` and `COPY … FROM STDIN` of one part, into `sinkTable`. */
export function copyStatements(
  part: CopyPart,
  target: TargetTable,
  { mode, sid, sinkTable, range, onExpressionError }: CopyStatementOptions,
): CopyStatements {
  const extra = extraColumns(target, mode, sid);
  const binary = part.binary && extra.every((e) => e.binary);
  const read = part.transform ? part.sourceColumns : part.columns;
  const select = [...read.map(quoteIdent), ...extra.map((e) => e.expr)].join(", ");
  const only = part.kind === "table" ? "ONLY " : "";
  const where = range
    ? ` WHERE ctid >= '(${range.from},0)'::tid${
      range.to === null ? "" : ` AND ctid < '(${range.to},0)'::tid`
    }`
    : "";
  const format = binary ? " WITH (FORMAT binary)" : "";
  const into = [...part.columns, ...extra.map((e) => e.name)].map(quoteIdent).join(", ");
  return {
    copyOut: `COPY (SELECT ${select || "NULL"} FROM ${only}${
      qualify(part.rel.schema, part.rel.name)
    }${where}) TO STDOUT${format}`,
    copyIn: `COPY ${sinkTable} (${into}) FROM STDIN${format}`,
    binary,
    ...(part.transform ? { rowMap: rowMapOf(part, onExpressionError) } : {}),
  };
}

/** Failed expressions of the copies, per table: ten lines a minute at most. */
const copyLines = new LineBudget();

/** The row mapper of a part with a transform; failed expressions are logged with the row's key. */
function rowMapOf(
  part: CopyPart,
  onExpressionError: CopyStatementOptions["onExpressionError"],
): (row: Uint8Array) => Uint8Array | null {
  const { table, keep, label } = part.transform!;
  const logger = log("sync");
  const started = new Date();
  return copyRowMapper(table, {
    sourceCount: part.sourceColumns.length,
    keep,
    context: { op: "copy", commitTime: () => started },
    sink: (key, message, rowKey) => {
      onExpressionError?.(label, rowKey);
      const line = copyLines.take(label);
      if (!line.say) return;
      logger.warn(
        "{expression} of {table} failed for key ({key}): {message}; on_error: {policy}{held}",
        {
          expression: key,
          table: label,
          key: rowKey.join(", "),
          message,
          policy: table.policy,
          held: heldNote(line.held),
        },
      );
    },
  });
}

/** Columns the source SELECT produces itself: the sid and the history bounds. */
function extraColumns(
  target: TargetTable,
  mode: TableMode,
  sid: string,
): { name: string; expr: string; binary: boolean }[] {
  const out = [];
  const typeOf = (name: string) => target.columns.get(name)?.typeOid;
  if (target.hasSid) {
    out.push({ name: "sid", expr: `${quoteLiteral(sid)}::text`, binary: typeOf("sid") === TEXT });
  }
  if (mode === "history" && target.hasHistoryColumns) {
    const tz = typeOf("kvsz_start") === TIMESTAMPTZ && typeOf("kvsz_end") === TIMESTAMPTZ;
    out.push(
      { name: "kvsz_start", expr: `'1900-01-01'::timestamptz`, binary: tz },
      { name: "kvsz_end", expr: `'9999-01-01'::timestamptz`, binary: tz },
      { name: "kvsz_deleted", expr: `false`, binary: typeOf("kvsz_deleted") === BOOL },
    );
  }
  return out;
}

const BOOL = 16;
const TEXT = 25;
const TIMESTAMPTZ = 1184;

/**
 * Built-in types whose binary form any server of 12 to 18 sends and receives
 * alike (and their arrays, whose binary form names the element type's OID,
 * equal on every server for built-in types): bool, bytea, "char", name, int8,
 * int2, int4, text, oid, json, float4, float8, money, bpchar, varchar, date,
 * time, timestamp, timestamptz, interval, timetz, numeric, uuid, jsonb.
 */
const BINARY_SAFE = new Set([
  16,
  17,
  18,
  19,
  20,
  21,
  23,
  25,
  26,
  114,
  700,
  701,
  790,
  1042,
  1043,
  1082,
  1083,
  1114,
  1184,
  1186,
  1266,
  1700,
  2950,
  3802,
  // their array types
  1000,
  1001,
  1002,
  1003,
  1016,
  1005,
  1007,
  1009,
  1028,
  199,
  1021,
  1022,
  791,
  1014,
  1015,
  1182,
  1183,
  1115,
  1185,
  1187,
  1270,
  1231,
  2951,
  3807,
]);

/** Both sides store the column as the same built-in type, safe to COPY in binary. */
function sameBinaryType(sourceOid: number, targetOid: number): boolean {
  return sourceOid === targetOid && BINARY_SAFE.has(sourceOid);
}
