/**
 * A config file as written, its `${VAR}` references unexpanded: what kvsz
 * copies into a config it writes from it (the reverse config of
 * `kvsz switchover --reverse`), so that no password the environment holds
 * reaches a file.
 */
import YAML from "yaml";
import { mapFilePath } from "./load.ts";

/** The raw values of a config file. */
export interface RawConfig {
  /** The top-level mapping, `databases` and `map_file` left out. */
  settings: Record<string, unknown>;
  /** The `databases` list, from the map file when the config names one. */
  databases: unknown[];
}

/** Reads `file` (and its map file) without expanding anything; throws when it is not a mapping. */
export async function readRawConfig(file: string): Promise<RawConfig> {
  const root = YAML.parse(await Deno.readTextFile(file));
  if (!isRecord(root)) throw new Error(`${file} is not a YAML mapping`);
  const { databases, map_file: mapFile, ...settings } = root;
  if (Array.isArray(databases)) return { settings, databases };
  if (typeof mapFile === "string") {
    const list = YAML.parse(await Deno.readTextFile(mapFilePath(file, mapFile)));
    if (Array.isArray(list)) return { settings, databases: list };
  }
  throw new Error(`${file} has no databases list`);
}

/** `value[key]` when `value` is a mapping, else undefined. */
export function rawField(value: unknown, key: string): unknown {
  return isRecord(value) ? value[key] : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
