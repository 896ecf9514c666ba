/**
 * Database mode's config: the config file's settings with the store's map in
 * place of the file's `databases:` (or `map_file`), checked by the same
 * validator as the file, so a change through the API is refused for what a
 * file would be refused for.
 */
import { parse, stringify } from "yaml";
import { dirname, isAbsolute, join } from "node:path";
import { parseConfig } from "../config/load.ts";
import type { Config } from "../config/types.ts";
import { databasesOfRows, type MapRows, rowsOfDocument } from "./map_rows.ts";

/** The config file's text as YAML values (no `${VAR}` expanded). */
function readRaw(file: string): Record<string, unknown> {
  const value = parse(Deno.readTextFileSync(file));
  return value !== null && typeof value === "object" ? value as Record<string, unknown> : {};
}

/** The map the config file writes (its `databases:` or its `map_file`), as written. */
export function fileMapRows(file: string): MapRows {
  const raw = readRaw(file);
  if (raw.databases === undefined && typeof raw.map_file === "string") {
    const path = isAbsolute(raw.map_file) ? raw.map_file : join(dirname(file), raw.map_file);
    return rowsOfDocument(parse(Deno.readTextFileSync(path)));
  }
  return rowsOfDocument(raw.databases);
}

/**
 * The config of `file` with `rows` as its map; throws the validator's
 * ConfigError when the map is not valid. An empty map runs no source.
 */
export function configWithMap(file: string, rows: MapRows): Config {
  const raw = readRaw(file);
  delete raw.map_file;
  const databases = databasesOfRows(rows);
  if (databases.length === 0) {
    // The validator wants a database: check the settings with the file's map, run none.
    return { ...parseConfig(Deno.readTextFileSync(file), file), databases: [] };
  }
  return parseConfig(stringify({ ...raw, databases }), file);
}
