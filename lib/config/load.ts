/** Finds, reads and checks the config file (and the map file it may name). */

import { dirname, isAbsolute, join } from "node:path";
import { DEFAULT_CONFIG_PATHS } from "./defaults.ts";
import { problemAt, readDocument, type SourceDocument } from "./document.ts";
import { ConfigError, type Problem } from "./errors.ts";
import type { Env } from "./interpolate.ts";
import type { Config } from "./types.ts";
import { validateConfig } from "./validate.ts";
import { existsSync } from "../fs.ts";

/**
 * Paths to look for the config at: the `--config` value alone when given, else
 * `$KVSZ_CONFIG` alone when set, else `kvsz.yaml` then `/etc/kvsz/kvsz.yaml`.
 * An explicit choice is never silently replaced by another file.
 */
export function configCandidates(explicit?: string, env: Env = Deno.env.toObject()): string[] {
  if (explicit !== undefined && explicit !== "") return [explicit];
  const fromEnv = env.KVSZ_CONFIG;
  if (fromEnv !== undefined && fromEnv !== "") return [fromEnv];
  return [...DEFAULT_CONFIG_PATHS];
}

/** The first existing config candidate, or the first candidate when none exists (so errors name it). */
export function findConfigPath(explicit?: string, env?: Env): string {
  const candidates = configCandidates(explicit, env);
  return candidates.find(existsSync) ?? candidates[0];
}

/** Options of {@link loadConfig}. */
export interface LoadOptions {
  /** Paths that were looked for, named when the file does not exist (default: just `path`). */
  tried?: readonly string[];
}

/** Reads and checks the config file at `path`; throws `ConfigError` listing every problem. */
export async function loadConfig(
  path: string,
  env?: Env,
  options: LoadOptions = {},
): Promise<Config> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    const tried = options.tried ?? [path];
    const message = error instanceof Deno.errors.NotFound
      ? `config file does not exist (tried ${
        tried.join(", ")
      }; name one with --config or $KVSZ_CONFIG)`
      : `cannot read config file: ${(error as Error).message}`;
    throw new ConfigError([{ file: path, path: "", message }]);
  }
  return parseConfig(text, path, env);
}

/** Finds the config as {@link findConfigPath} does and loads it as {@link loadConfig} does. */
export function findAndLoadConfig(explicit?: string, env?: Env): Promise<Config> {
  const tried = configCandidates(explicit, env);
  return loadConfig(findConfigPath(explicit, env), env, { tried });
}

/**
 * Checks config `text` read from `file` (used in messages and to find a
 * relative `map_file`), expanding `${VAR}` from `env` (default: the process
 * environment). Throws `ConfigError` listing every problem.
 */
export function parseConfig(text: string, file: string, env?: Env): Config {
  const environment = env ?? Deno.env.toObject();
  const main = readDocument(text, file, environment);
  if (main.document === undefined) throw new ConfigError(main.problems);
  const problems = [...main.problems];
  const files = [file];

  let mapDocument: SourceDocument | undefined;
  const mapFile = mapFileOf(main.document);
  if (mapFile !== undefined) {
    const mapPath = mapFilePath(file, mapFile);
    files.push(mapPath);
    const read = readMapFile(main.document, mapPath, environment);
    problems.push(...read.problems);
    mapDocument = read.document;
  }

  const validation = validateConfig(main.document, mapDocument);
  problems.push(...validation.problems);
  if (problems.length > 0) throw new ConfigError(sortProblems(problems, files));
  return validation.config;
}

/** Where a config file's `map_file` is: relative to the config file's folder unless absolute. */
export function mapFilePath(configFile: string, mapFile: string): string {
  return isAbsolute(mapFile) ? mapFile : join(dirname(configFile), mapFile);
}

/** The `map_file` value when it is a usable path and no `databases` list is given instead. */
function mapFileOf(document: SourceDocument): string | undefined {
  if (!(document.value instanceof Map) || document.value.has("databases")) return undefined;
  const value = document.value.get("map_file");
  if (typeof value !== "string" || value === "" || document.unresolved.has("map_file")) {
    return undefined;
  }
  return value;
}

function readMapFile(
  main: SourceDocument,
  mapPath: string,
  env: Env,
): { document?: SourceDocument; problems: Problem[] } {
  let text: string;
  try {
    text = Deno.readTextFileSync(mapPath);
  } catch (error) {
    const message = error instanceof Deno.errors.NotFound
      ? `file ${mapPath} does not exist`
      : `cannot read ${mapPath}: ${(error as Error).message}`;
    return { problems: [problemAt(main, ["map_file"], message)] };
  }
  return readDocument(text, mapPath, env);
}

/** Problems in file order (config file first), then by line; problems without a line first. */
function sortProblems(problems: Problem[], files: string[]): Problem[] {
  const rank = (problem: Problem) => files.indexOf(problem.file);
  return [...problems].sort((a, b) => rank(a) - rank(b) || (a.line ?? 0) - (b.line ?? 0));
}
