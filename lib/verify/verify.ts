/**
 * `kvsz verify`: every clone-mode table of every source compared with its
 * target — schema, then rows (see data_compare.ts) — read-only, on clients
 * opened for the comparison and closed after it.
 */
import {
  type Config,
  type DatabaseMapping,
  type SourceUrl,
  targetSchemaOf,
} from "../config/types.ts";
import { connect, serverMajor, type Sql } from "../pg/connect.ts";
import { connectionProblem, describeError, describeUrl } from "../pg/describe.ts";
import { quoteLiteral } from "../pg/identifiers.ts";
import { configuredSources } from "../preflight/servers.ts";
import { mapBounded } from "../preflight/bounded.ts";
import { readSourceTable } from "../source/catalog.ts";
import { MissingTableError, type ResolvedTable, resolveTables } from "../source/tables.ts";
import { KVSZ_COLUMNS, SID_COLUMN } from "../apply/catalog.ts";
import { readVerifyTable, type VerifyColumn } from "./catalog.ts";
import { compareSchema } from "./schema_compare.ts";
import { compareTableData } from "./data_compare.ts";
import { waitForDestination } from "./catch_up.ts";
import type { KeyColumn } from "./row_hash.ts";
import { type TableReport, type VerifyReport, verifyReport } from "./report.ts";

/** Options of {@link verifyConfig}. */
export interface VerifyOptions {
  /** About this many source rows per chunk (default 10000). */
  chunkRows?: number;
  /** Seconds a difference is re-checked while kvsz streams (default 30). */
  waitSeconds?: number;
  /** Chunks compared at once (default 4). */
  concurrency?: number;
  /** Differing rows kept per table with their keys (default 1000). */
  maxKept?: number;
  /** Sources compared at once (default 4), each with `concurrency` chunks at once. */
  sourcesAtOnce?: number;
}

/** Default of {@link VerifyOptions.chunkRows}. */
export const DEFAULT_CHUNK_ROWS = 10_000;
/** Default of {@link VerifyOptions.waitSeconds}. */
export const DEFAULT_WAIT_SECONDS = 30;
/** Default of {@link VerifyOptions.concurrency}. */
export const DEFAULT_CONCURRENCY = 4;
/** Default of {@link VerifyOptions.sourcesAtOnce}. */
export const DEFAULT_SOURCES_AT_ONCE = 4;

/** Compares every clone-mode table of every source of `config` with its target. */
export async function verifyConfig(
  config: Config,
  opts: VerifyOptions = {},
): Promise<VerifyReport> {
  const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
  const destination = connect(config.destination.url, { max: concurrency });
  try {
    try {
      await destination.unsafe("SELECT 1");
    } catch (e) {
      throw new Error(
        `destination ${describeUrl(config.destination.url)}: ${
          connectionProblem(e, config.destination.url)
        }`,
      );
    }
    const perSource = await mapBounded(
      configuredSources(config),
      opts.sourcesAtOnce ?? DEFAULT_SOURCES_AT_ONCE,
      ({ db, source }) =>
        verifySource(config, { db, source, destination }, { ...opts, concurrency }),
    );
    return verifyReport(perSource.flat());
  } finally {
    await destination.end({ timeout: 5 });
  }
}

interface SourceContext {
  db: DatabaseMapping;
  source: SourceUrl;
  destination: Sql;
}

/** The tables of one source, compared one after the other. */
async function verifySource(
  config: Config,
  ctx: SourceContext,
  opts: VerifyOptions & { concurrency: number },
): Promise<TableReport[]> {
  const { db, source } = ctx;
  const base = {
    database: db.database,
    sid: source.sid,
    endpoint: describeUrl(source.url),
    source: "",
    target: "",
    sourceRows: 0,
    destinationRows: 0,
    chunks: 0,
    differingChunks: 0,
    rowDifferenceCount: 0,
    rowDifferences: [],
    rowsCompared: 0,
    schemaDifferences: [],
  };
  const sql = connect(source.url, { max: opts.concurrency });
  try {
    let major: number;
    try {
      major = await serverMajor(sql);
    } catch (e) {
      return [{
        ...base,
        verdict: "error",
        reason: `unreachable: ${connectionProblem(e, source.url)}`,
      }];
    }
    const out: TableReport[] = [];
    for (const mapping of db.tables) {
      const report = {
        ...base,
        source: `${mapping.sourceSchema}.${mapping.sourceName}`,
        target: `${targetSchemaOf(mapping, config.destination.schema)}.${mapping.target}`,
      };
      if (mapping.mode !== "clone") {
        out.push({
          ...report,
          verdict: "skipped",
          reason: `${mapping.mode} mode: the target keeps what the source no longer has, by design`,
        });
        continue;
      }
      try {
        const [resolved] = await resolveTables(sql, [mapping], major);
        out.push(await verifyTable(config, { ...ctx, sql, resolved, report }, opts));
      } catch (e) {
        const reason = e instanceof MissingTableError ? e.message : describeError(e);
        out.push({ ...report, verdict: "error", reason });
      }
    }
    return out;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

interface TableContext extends SourceContext {
  sql: Sql;
  resolved: ResolvedTable;
  report: Omit<TableReport, "verdict">;
}

/** One table: its schema against its target's, then its rows. */
async function verifyTable(
  config: Config,
  ctx: TableContext,
  opts: VerifyOptions & { concurrency: number },
): Promise<TableReport> {
  const { resolved, report, sql, destination } = ctx;
  const mapping = resolved.mapping;
  const rel = resolved.leavesOf ?? resolved.copied[0];
  const sourceTable = await readVerifyTable(sql, rel.schema, rel.name);
  const targetSchema = targetSchemaOf(mapping, config.destination.schema);
  const target = await readVerifyTable(destination, targetSchema, mapping.target);
  if (!sourceTable) {
    return {
      ...report,
      verdict: "error",
      reason: `source table ${rel.schema}.${rel.name} does not exist`,
    };
  }
  if (!target) {
    return { ...report, verdict: "different", schemaDifferences: ["table missing at destination"] };
  }
  const hasSid = target.columns.some((c) => c.name === SID_COLUMN);
  const schemaDifferences = compareSchema(sourceTable, target, { hasSid });
  const targetColumns = new Map(target.columns.map((c) => [c.name, c]));
  const columns = sourceTable.columns
    .filter((c) => !KVSZ_COLUMNS.has(c.name) && targetColumns.has(c.name))
    .map((c) => c.name);
  const identity = await readSourceTable(sql, rel.schema, rel.name);
  const keyNames = identity?.identityColumns.length
    ? identity.identityColumns
    : identity?.primaryKey ?? [];
  const keyed = keyNames.length > 0 && keyNames.every((k) => columns.includes(k));
  const keyOf = (cols: VerifyColumn[]): KeyColumn[] =>
    keyed ? keyNames.map((k) => cols.find((c) => c.name === k)!) : [];
  const data = await compareTableData(
    {
      sql,
      side: { relations: resolved.copied, columns, key: keyOf(sourceTable.columns), where: null },
    },
    {
      sql: destination,
      side: {
        relations: [{ schema: targetSchema, name: mapping.target }],
        columns,
        key: keyOf(target.columns),
        where: hasSid ? `${SID_COLUMN} = ${quoteLiteral(ctx.source.sid)}` : null,
      },
    },
    {
      chunkRows: opts.chunkRows ?? DEFAULT_CHUNK_ROWS,
      concurrency: opts.concurrency,
      catchUp: (deadline) =>
        waitForDestination(sql, destination, {
          source: { database: ctx.db.database, sid: ctx.source.sid },
          deadline,
        }),
      waitMs: (opts.waitSeconds ?? DEFAULT_WAIT_SECONDS) * 1000,
      maxKept: opts.maxKept ?? 1000,
    },
  );
  return {
    ...report,
    verdict: data.equal && schemaDifferences.length === 0 ? "equal" : "different",
    sourceRows: data.sourceRows,
    destinationRows: data.destinationRows,
    chunks: data.chunks,
    differingChunks: data.differingChunks,
    rowDifferenceCount: data.differenceCount,
    rowDifferences: data.differences,
    rowsCompared: data.rowsCompared,
    schemaDifferences,
  };
}
