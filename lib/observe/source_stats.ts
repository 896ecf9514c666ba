/**
 * What the API and the console show of each source beyond the metrics: per
 * table the rows copied (with the copy's estimate) and the operations
 * applied, and the source's recent anomalies and errors. Fed by wrapping the
 * engine's {@link PipelineEvents} hooks.
 */
import type { PipelineEvents, SyncProgress } from "../engine/events.ts";

/** Recent anomalies and errors kept per source. */
const RECENT = 20;

/** One table of one source. */
export interface TableStats {
  /** Rows copied by the last (or running) initial copy. */
  rowsCopied: number;
  /** The copy's estimate of the table's rows (0: unknown or no copy). */
  copyEstimate: number;
  /** True while its copy runs. */
  copying: boolean;
  /** Changes applied by operation since kvsz started. */
  operations: Record<string, number>;
}

/** A recent anomaly or error. */
export interface RecentEvent {
  /** ISO time it happened. */
  at: string;
  /** The anomaly's kind (`insert_existing`, …) or `error`. */
  kind: string;
  /** The source table (anomalies only). */
  table?: string;
  /** The row's key as text (anomalies) or the error's description (no password). */
  detail: string;
}

/** One source's stats. */
export interface SourceStats {
  tables: Map<string, TableStats>;
  anomalies: number;
  recentAnomalies: RecentEvent[];
  recentErrors: RecentEvent[];
}

/** Stats of every source, by `database` and `sid`. */
export class SourceStatsBoard {
  readonly #sources = new Map<string, SourceStats>();

  /** The stats of a source (empty until it reports). */
  of(database: string, sid: string): SourceStats {
    const k = `${database}\u0000${sid}`;
    let s = this.#sources.get(k);
    if (!s) {
      s = { tables: new Map(), anomalies: 0, recentAnomalies: [], recentErrors: [] };
      this.#sources.set(k, s);
    }
    return s;
  }

  /** Forgets a source (removed). */
  remove(database: string, sid: string): void {
    this.#sources.delete(`${database}\u0000${sid}`);
  }

  /** `inner`, also recording into this board. */
  wrap(database: string, sid: string, inner: PipelineEvents): PipelineEvents {
    const s = this.of(database, sid);
    const table = (name: string) => {
      const key = name.includes(".") ? name : `public.${name}`;
      let t = s.tables.get(key);
      if (!t) {
        t = { rowsCopied: 0, copyEstimate: 0, copying: false, operations: {} };
        s.tables.set(key, t);
      }
      return t;
    };
    const push = (list: RecentEvent[], e: RecentEvent) => {
      list.push(e);
      if (list.length > RECENT) list.shift();
    };
    return {
      ...inner,
      onFailure: (error) => {
        push(s.recentErrors, { at: new Date().toISOString(), kind: "error", detail: error });
        inner.onFailure?.(error);
      },
      onAnomaly: (a) => {
        s.anomalies++;
        push(s.recentAnomalies, {
          at: new Date().toISOString(),
          kind: a.kind,
          table: a.route.source,
          detail: a.key.map((v) => v ?? "NULL").join(", "),
        });
        inner.onAnomaly?.(a);
      },
      onOperations: (name, applied) => {
        const ops = table(name).operations;
        ops[applied.operation] = (ops[applied.operation] ?? 0) + applied.count;
        inner.onOperations?.(name, applied);
      },
      syncProgress: (): SyncProgress => {
        const display = inner.syncProgress?.();
        return {
          start: (name, estimatedRows, ranges) => {
            Object.assign(table(name), {
              rowsCopied: 0,
              copyEstimate: estimatedRows,
              copying: true,
            });
            display?.start(name, estimatedRows, ranges);
          },
          update: (name, rows, bytes) => {
            table(name).rowsCopied = rows;
            display?.update(name, rows, bytes);
          },
          finish: (name, rows) => {
            Object.assign(table(name), { rowsCopied: rows, copying: false });
            display?.finish(name, rows);
          },
        };
      },
    };
  }
}
