/** What the `tenants` scenario needs of an engine replicating every tenant at once. */
import type { Marker, TickTimes } from "./load.ts";

/** An engine that replicates all tenants of the fleet. */
export interface TenantEngine {
  readonly label: "kvsz" | "native";
  /** Starts replication: the first time creates it and copies every tenant; later resumes. */
  start(): Promise<void>;
  /**
   * Resolves when every tenant is copied and streaming; throws
   * {@link NotStreamingError} when that does not happen in `timeoutMs`.
   */
  waitAllStreaming(timeoutMs: number): Promise<void>;
  /** Stops replication, keeping every slot; resolves when the slots are released. */
  pause(): Promise<void>;
  /** Resolves when every tenant's marker tick (of `phase`) is applied at the destination. */
  waitMarkers(markers: Map<string, Marker>, phase: number, timeoutMs: number): Promise<void>;
  /** Destination write times of the ticks of `phase`, per tenant database. */
  destTickTimes(phase: number): Promise<TickTimes>;
  /** Destination digests (see `digests` in load.ts), per tenant database. */
  destDigests(): Promise<Map<string, string>>;
  /** CPU seconds of the engine's own processes (kvsz: its process; native: its workers). */
  cpuSeconds(): Promise<number | null>;
  /** Destination processes serving the engine (kvsz: its connections; native: its workers). */
  destPids(): Promise<number[]>;
  /** Stops everything it runs. */
  dispose(): Promise<void>;
}

/** Not every tenant got copied and streaming in time: a result, reported, not a crash. */
export class NotStreamingError extends Error {
  constructor(
    message: string,
    /** Tenants streaming when it gave up. */
    readonly streaming: number,
    /** Seconds it waited. */
    readonly seconds: number,
    /** The engine's most frequent warnings and errors. */
    readonly problems: string[],
  ) {
    super(message);
  }
}
