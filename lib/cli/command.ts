/** The shape every subcommand shares, and flag parsing with kvsz's exit codes. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { KvszError } from "../errors.ts";
import { parseShard, type Shard } from "../engine/shard.ts";

/** Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A usage mistake: printed as one line plus the subcommand's usage, exit 2. */
export class UsageError extends KvszError {}

/** One subcommand of `kvsz`. */
export interface Command {
  name: string;
  /** One line for `kvsz help`. */
  summary: string;
  /** Full help text shown by `--help`. */
  help: string;
  /** Flags accepted (parsed with node:util parseArgs, strict). */
  options: NonNullable<ParseArgsConfig["options"]>;
  /** Runs with parsed flags and positionals; returns the exit code. */
  run(flags: Record<string, unknown>, positionals: string[]): Promise<number>;
}

/** Parses `args` against the command's options; unknown flags are a UsageError. */
export function parseFlags(
  cmd: Command,
  args: string[],
): { flags: Record<string, unknown>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { ...cmd.options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
    return { flags: values as Record<string, unknown>, positionals };
  } catch (e) {
    throw new UsageError(
      (e as Error).message.split("\n")[0].replace(/\. To specify a positional.*$/, ""),
    );
  }
}

/** The `--config` flag every database-facing subcommand takes. */
export const CONFIG_OPTION = {
  config: { type: "string", short: "c" },
} as const;

/** Help text for the `--config` flag. */
export const CONFIG_HELP =
  "  -c, --config FILE   config file (default: $KVSZ_CONFIG, ./kvsz.yaml, /etc/kvsz/kvsz.yaml)";

/** Parses a `--shard I/N` value (see `parseShard`); a bad one is a UsageError naming `origin`. */
export function shardOption(text: string, origin = "--shard"): Shard {
  try {
    return parseShard(text, origin);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}
