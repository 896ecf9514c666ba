/** What the API reads and acts on, handed over by `kvsz run`. */
import type { Config } from "../config/types.ts";
import type { Readiness } from "../observe/metrics.ts";
import type { SourceStatsBoard } from "../observe/source_stats.ts";
import type { MapRows } from "./map_rows.ts";
import type { MapStore } from "./map_store.ts";

/** Pausing, resuming and restarting sources (the supervisor's). */
export interface SourceControl {
  stateOf(database: string, sid: string): "running" | "paused" | "absent";
  pause(database: string, sid: string): Promise<boolean>;
  resume(database: string, sid: string): Promise<boolean>;
  restart(database: string, sid: string, between: () => Promise<void>): Promise<boolean>;
}

/** The running process, as the API sees it. */
export interface ApiContext {
  /** The config in force (its map as the API changes it, `all_tables` expanded). */
  config(): Config;
  /** The config in force with the discovered sources in `urls`: every source that runs. */
  sources(): Config;
  /** The map with its ids. */
  rows(): Promise<MapRows>;
  readiness(): Readiness;
  /** WAL retained by each source's slot, by `database\0sid` (as last polled). */
  retainedWal(): Promise<Map<string, number>>;
  stats: SourceStatsBoard;
  control: SourceControl;
  /** Drops a source's slot and publication; the lines say what was done. */
  dropSource(database: string, sid: string): Promise<{ ok: boolean; lines: string[] }>;
  /** The map store of database mode; null in declarative mode. */
  store: MapStore | null;
  /** Applies a new map (database mode): the sources it does not touch keep streaming. */
  reload(): Promise<void>;
}
