/**
 * kvsz's own view of each source (what kuvasz-streamer's API lacks): state,
 * lag in bytes and seconds, WAL retained, the initial copy's progress,
 * anomalies and errors, and per mapped table the rows copied and the
 * operations applied.
 */
import type { DatabaseMapping, SourceUrl } from "../config/types.ts";
import { redactUrl } from "../pg/redact.ts";
import type { ApiContext } from "./context.ts";
import type { RecentEvent } from "../observe/source_stats.ts";

/** One mapped table of a source. */
export interface SourceTableView {
  name: string;
  target: string;
  type: string;
  rows_copied: number;
  copy_estimate: number;
  copying: boolean;
  operations: Record<string, number>;
}

/** One source. */
export interface SourceView {
  database: string;
  sid: string;
  url: string;
  discovered: boolean;
  state: string;
  connected: boolean;
  lag_bytes: number | null;
  lag_seconds: number;
  wal_retained_bytes: number | null;
  error: string | null;
  copy: { tables: number; tables_copying: number; rows_copied: number; rows_estimated: number };
  anomalies: number;
  recent_anomalies: RecentEvent[];
  recent_errors: RecentEvent[];
  tables: SourceTableView[];
}

/** Every source that runs (or is paused), in config order. */
export async function sourceViews(ctx: ApiContext): Promise<SourceView[]> {
  const readiness = new Map(
    ctx.readiness().sources.map((s) => [`${s.database}\u0000${s.sid}`, s]),
  );
  const retained = await ctx.retainedWal();
  return ctx.sources().databases.flatMap((db) =>
    db.urls.flatMap((u) => {
      const state = ctx.control.stateOf(db.database, u.sid);
      if (state === "absent" && !readiness.has(`${db.database}\u0000${u.sid}`)) return [];
      return [view(ctx, db, u, {
        readiness: readiness.get(`${db.database}\u0000${u.sid}`),
        retained: retained.get(`${db.database}\u0000${u.sid}`) ?? null,
        paused: state === "paused",
      })];
    })
  );
}

/** The source `database`/`sid`, or null when none runs. */
export async function sourceView(
  ctx: ApiContext,
  database: string,
  sid: string,
): Promise<SourceView | null> {
  return (await sourceViews(ctx)).find((s) => s.database === database && s.sid === sid) ?? null;
}

function view(
  ctx: ApiContext,
  db: DatabaseMapping,
  u: SourceUrl,
  known: {
    readiness?: ReturnType<ApiContext["readiness"]>["sources"][number];
    retained: number | null;
    paused: boolean;
  },
): SourceView {
  const stats = ctx.stats.of(db.database, u.sid);
  const tables = db.tables.map((t): SourceTableView => {
    const s = stats.tables.get(`${t.sourceSchema}.${t.sourceName}`);
    return {
      name: t.source,
      target: t.target,
      type: t.mode,
      rows_copied: s?.rowsCopied ?? 0,
      copy_estimate: Math.round(s?.copyEstimate ?? 0),
      copying: s?.copying ?? false,
      operations: { ...s?.operations },
    };
  });
  const r = known.readiness;
  return {
    database: db.database,
    sid: u.sid,
    url: redactUrl(u.url),
    discovered: u.discovered !== undefined,
    state: known.paused ? "paused" : r?.state ?? "disconnected",
    connected: r?.connected ?? false,
    lag_bytes: r?.lagBytes ?? null,
    lag_seconds: Math.round((r?.lagSeconds ?? 0) * 1000) / 1000,
    wal_retained_bytes: known.retained,
    error: r?.error ?? null,
    copy: {
      tables: tables.length,
      tables_copying: tables.filter((t) => t.copying).length,
      rows_copied: tables.reduce((n, t) => n + t.rows_copied, 0),
      rows_estimated: tables.reduce((n, t) => n + t.copy_estimate, 0),
    },
    anomalies: stats.anomalies,
    recent_anomalies: stats.recentAnomalies,
    recent_errors: stats.recentErrors,
    tables,
  };
}
