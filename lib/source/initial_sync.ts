/**
 * Initial sync: copies mapped tables from a source snapshot into their targets
 * as a byte pipe (`COPY (SELECT …) TO STDOUT` → `COPY … FROM STDIN`), several
 * tables in parallel, all in the same exported snapshot, optionally rate
 * limited. Each table's copy commits together with the record of the snapshot
 * LSN it came from, so a crash never leaves a half-copied table marked synced.
 */
import type { Sql } from "../pg/connect.ts";
import { connect } from "../pg/connect.ts";
import { qualify, quoteIdent, quoteLiteral } from "../pg/identifiers.ts";
import { formatLsn } from "../pg/lsn.ts";
import type { TargetTable } from "../apply/types.ts";
import { markTableSynced } from "../apply/progress.ts";
import { KVSZ_COLUMNS } from "../apply/routes.ts";
import { prepareResync } from "../apply/resync.ts";
import { type QualifiedName, readSourceTable } from "./catalog.ts";
import { importSnapshot } from "./slot.ts";
import type { ResolvedTable } from "./tables.ts";
import { RateLimiter } from "./rate_limiter.ts";
import { Rechunker } from "./rechunk.ts";
import type { SyncProgress } from "../observe/sync_progress.ts";

/** One table to copy. */
export interface SyncJob {
  table: ResolvedTable;
  target: TargetTable;
  /** The target already holds rows of this source: merge instead of a plain COPY. */
  resync: boolean;
}

/** Options for {@link copyTables}. */
export interface CopyOptions {
  sourceUrl: string;
  snapshotName: string;
  /** LSN of the snapshot: changes committed at or below it are in the copy. */
  snapshotLsn: bigint;
  dest: Sql;
  destSchema: string;
  database: string;
  sid: string;
  parallelism: number;
  /** Rows per second for this source (0 = unlimited) and burst size. */
  rate: number;
  burst: number;
  progress: SyncProgress;
}

/** Copies every job, `parallelism` at a time, in the exported snapshot. */
export async function copyTables(jobs: SyncJob[], opts: CopyOptions): Promise<void> {
  const queue = [...jobs];
  const limiter = opts.rate > 0 ? new RateLimiter(opts.rate, opts.burst || opts.rate) : null;
  const workers = Array.from(
    { length: Math.max(1, Math.min(opts.parallelism, jobs.length)) },
    async () => {
      // One connection per worker (max 1): every statement runs in the snapshot transaction.
      const source = connect(opts.sourceUrl, { max: 1 });
      try {
        await importSnapshot(source, opts.snapshotName);
        for (let job = queue.shift(); job; job = queue.shift()) {
          await copyOne(source, job, opts, limiter);
        }
      } finally {
        // The read-only snapshot transaction ends with the connection: no COMMIT,
        // whose promise npm:postgres sometimes never resolves after a COPY.
        await source.end({ timeout: 0 });
      }
    },
  );
  // All workers import the snapshot before the first copy ends; fail fast on any error.
  await Promise.all(workers);
}

async function copyOne(
  source: Sql,
  job: SyncJob,
  opts: CopyOptions,
  limiter: RateLimiter | null,
): Promise<void> {
  const { mapping } = job.table;
  const label = mapping.source;
  const target = job.target;
  const parts: {
    rel: QualifiedName;
    columns: string[];
    kind: string;
    estimate: number;
    key: string[];
  }[] = [];
  for (const rel of job.table.copied) {
    const table = await readSourceTable(source, rel.schema, rel.name);
    if (!table) throw new Error(`source table ${rel.schema}.${rel.name} vanished during sync`);
    const columns = table.columns.map((c) => c.name).filter((c) =>
      target.columns.has(c) && !KVSZ_COLUMNS.has(c)
    );
    const [est] = await source.unsafe(
      `SELECT GREATEST(reltuples, 0)::int8 AS n FROM pg_class WHERE oid = $1::int8::oid`,
      [table.oid],
    );
    const key = table.identityColumns.length ? table.identityColumns : table.primaryKey;
    parts.push({ rel, columns, kind: table.kind, estimate: Number(est?.n ?? 0), key });
  }
  const extra = extraColumns(target, mapping.mode, opts.sid);
  opts.progress.start(label, parts.reduce((n, p) => n + p.estimate, 0));
  let rows = 0;
  let limited = 0;
  await opts.dest.begin(async (tx) => {
    const columns = parts[0]?.columns.filter((c) => parts.every((p) => p.columns.includes(c)));
    const sink = await prepareResync(tx as unknown as Sql, {
      target,
      mode: mapping.mode,
      resync: job.resync,
      columns: columns ?? [],
      sourceKey: parts[0]?.key ?? [],
    }, opts.sid);
    for (const part of parts) {
      const select = [...part.columns.map(quoteIdent), ...extra.map((e) => e.expr)].join(", ");
      const only = part.kind === "table" ? "ONLY " : "";
      const copyOut = `COPY (SELECT ${select || "NULL"} FROM ${only}${
        qualify(part.rel.schema, part.rel.name)
      }) TO STDOUT`;
      const into = [...part.columns, ...extra.map((e) => e.name)].map(quoteIdent).join(", ");
      const copyIn = `COPY ${sink.table} (${into}) FROM STDIN`;
      const before = rows;
      rows += await pipeCopy(source, tx as unknown as Sql, copyOut, copyIn, (r, b) => {
        opts.progress.update(label, before + r, b);
        const units = before + r - limited;
        limited = before + r;
        return limiter?.take(units);
      });
    }
    await sink.finish();
    await markTableSynced(
      tx as unknown as Sql,
      opts.database,
      opts.sid,
      mapping.source,
      mapping.target,
      formatLsn(opts.snapshotLsn),
      rows,
    );
  });
  // Fresh statistics, or the first set-based statements plan against an empty table.
  await opts.dest.unsafe(`ANALYZE ${qualify(target.schema, target.name)}`);
  opts.progress.finish(label, rows);
}

/** Columns the source SELECT produces itself: the sid and the history bounds. */
function extraColumns(
  target: TargetTable,
  mode: string,
  sid: string,
): { name: string; expr: string }[] {
  const out = [];
  if (target.hasSid) out.push({ name: "sid", expr: `${quoteLiteral(sid)}::text` });
  if (mode === "history" && target.hasHistoryColumns) {
    out.push(
      { name: "kvsz_start", expr: `'1900-01-01'::timestamptz` },
      { name: "kvsz_end", expr: `'9999-01-01'::timestamptz` },
      { name: "kvsz_deleted", expr: `false` },
    );
  }
  return out;
}

/**
 * Pipes one COPY out of the source into one COPY into the destination,
 * re-chunked into ~64 KiB writes; returns the number of rows.
 */
async function pipeCopy(
  source: Sql,
  dest: Sql,
  copyOut: string,
  copyIn: string,
  onChunk: (rowsSoFar: number, bytesSoFar: number) => void | Promise<void>,
): Promise<number> {
  // deno-lint-ignore no-explicit-any
  const reader: any = await source.unsafe(copyOut).readable();
  // deno-lint-ignore no-explicit-any
  const writer: any = await dest.unsafe(copyIn).writable();
  const chunker = new Rechunker(64 * 1024);
  let rows = 0;
  let bytes = 0;
  // Flowing mode with pause/resume on backpressure: async iteration over
  // porsager's COPY stream sometimes leaves the connection stuck after the last row.
  await new Promise<void>((resolve, reject) => {
    let failed = false;
    const fail = (e: unknown) => {
      if (failed) return;
      failed = true;
      reader.destroy?.();
      reject(e);
    };
    let waits = 0; // reasons the reader is paused: destination backpressure, rate limit
    const hold = () => {
      if (waits++ === 0) reader.pause();
    };
    const release = () => {
      if (--waits === 0) reader.resume();
    };
    writer.once("error", fail);
    reader.once("error", fail);
    reader.on("data", (chunk: Uint8Array) => {
      rows++; // the server sends each row of COPY TO STDOUT as one CopyData message
      bytes += chunk.byteLength;
      const full = chunker.push(chunk);
      if (!full) return;
      if (!writer.write(full)) {
        hold();
        writer.once("drain", release);
      }
      const wait = onChunk(rows, bytes);
      if (wait) {
        hold();
        wait.then(release, fail);
      }
    });
    reader.once("end", () => {
      const rest = chunker.flush();
      if (rest) writer.write(rest);
      writer.once("finish", resolve);
      writer.end();
    });
  });
  await onChunk(rows, bytes);
  return rows;
}
