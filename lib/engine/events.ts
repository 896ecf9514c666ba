/**
 * What the engine reports as it runs, for metrics, the progress display and
 * the demo: the engine calls these and imports nothing of who listens.
 */
import type { AppliedOperations, CommitInfo } from "../apply/applier.ts";
import type { DriftReport } from "../apply/routes.ts";
import type { Anomaly } from "../apply/types.ts";
import type { SlotLag } from "../source/slot.ts";

/** Hooks for metrics and status; all optional. */
export interface PipelineEvents {
  onConnected?(connected: boolean): void;
  /** An attempt failed with `error` (described for people, no password); the source is retried. */
  onFailure?(error: string): void;
  onCommit?(info: CommitInfo): void;
  onAnomaly?(a: Anomaly): void;
  /** A batch broke a constraint of destination table `table` (or had a value refused) and goes again one change at a time. */
  onOneByOne?(table: string): void;
  /** A table's column drift (none: an empty list), and whether it is stopped for it. */
  onColumnDrift?(report: DriftReport): void;
  onWalEnd?(walEnd: bigint): void;
  /** kvsz confirmed `confirmed` to the source, whose WAL ended at `walEnd` as far as kvsz read. */
  onConfirmed?(confirmed: bigint, walEnd: bigint): void;
  /** What the source says of the slot's WAL as the stream starts (the slot poller says it later). */
  onSlotLag?(lag: SlotLag): void;
  /** A display of the initial copy's progress, one for each copy (none: copied quietly). */
  syncProgress?(): SyncProgress;
  /** Changes applied to a table by one flush. */
  onOperations?(table: string, applied: AppliedOperations): void;
  /** True while another kvsz process holds the source's destination lock (this one waits). */
  onLockWait?(waiting: boolean): void;
}

/** Receives progress of the tables being copied. */
export interface SyncProgress {
  /** `ranges` > 1: the table is copied as that many page ranges in parallel. */
  start(table: string, estimatedRows: number, ranges?: number): void;
  update(table: string, rows: number, bytes: number): void;
  finish(table: string, rows: number): void;
}
