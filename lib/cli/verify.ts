/** `kvsz verify`: compares every mapped table, source and destination (rows and schema). */
import {
  type Command,
  CONFIG_HELP,
  CONFIG_OPTION,
  EXIT_FAILURE,
  EXIT_OK,
  UsageError,
} from "./command.ts";
import { findAndLoadConfig } from "../config/load.ts";
import { expandAllTables } from "../preflight/all_tables.ts";
import { withDiscovered } from "./discovered.ts";
import { filterSources } from "./status.ts";
import { printJson } from "./output.ts";
import {
  DEFAULT_CHUNK_ROWS,
  DEFAULT_CONCURRENCY,
  DEFAULT_WAIT_SECONDS,
  verifyConfig,
} from "../verify/verify.ts";
import { formatVerifyReport, KEYS_LISTED } from "../verify/report.ts";

/** A flag's value as a whole number of at least `min`; else a UsageError naming the flag. */
function wholeNumber(value: unknown, flag: string, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(String(value)) || !Number.isSafeInteger(n) || n < min) {
    throw new UsageError(`${flag} must be a whole number of at least ${min}, not "${value}"`);
  }
  return n;
}

/** The `verify` subcommand. */
export const verifyCommand: Command = {
  name: "verify",
  summary: "compare every mapped table, source and destination: rows and schema",
  help: `Usage: kvsz verify [--config FILE] [--database NAME]... [--source SID]... [--chunk-rows N]
                   [--wait-seconds N] [--json]

Compares every clone-mode table of every source with its target, read-only:

  rows    row count and an order-independent checksum, computed on each server
          (no row travels), per chunk of about --chunk-rows rows cut by the
          table's key (replica identity or primary key); a chunk that differs
          is narrowed (cut into 16 sub-ranges by key, each checksummed again,
          down to a few hundred rows), those ranges are compared key by key,
          and each key that differs is named: missing
          at destination, extra at destination, or different (with the columns).
          A table without a key is compared as a whole. The columns both sides
          have are compared; a target with sid is compared on that source's rows.
  schema  the target exists; columns (type, nullability), indexes and
          constraints (by definition, names aside), owned sequences. sid and
          kvsz_* columns, and sid in the target's keys, are left out.

append and history tables are skipped (their targets keep what the source
no longer has). While kvsz streams a source, a difference is re-checked after
the destination has applied the source's WAL up to where it was (kvsz.progress),
for up to --wait-seconds: only what stays different is reported.

One line per table (ok / FAIL / skip / ERR) with rows and chunks, then the
first ${KEYS_LISTED} keys that differ, then a summary.

Exit status: 0 when every compared table is equal, 1 when a difference is
found or a table could not be compared, 2 for a bad config or flag.

${CONFIG_HELP}
      --database NAME   verify only the sources of database NAME (repeatable)
      --source SID      verify only the sources with sid SID (repeatable)
      --chunk-rows N    about N rows per compared chunk (default ${DEFAULT_CHUNK_ROWS})
      --wait-seconds N  how long a difference is re-checked while kvsz streams
                        (default ${DEFAULT_WAIT_SECONDS})
      --json            print the report as JSON: {equal, summary, tables: [{database,
                        sid, endpoint, source, target, verdict, reason?, sourceRows,
                        destinationRows, chunks, differingChunks, rowDifferenceCount,
                        rowDifferences: [{key, kind, columns?}], rowsCompared,
                        schemaDifferences}]}

Sources are compared 4 at a time, each with 4 chunks at a time.`,
  options: {
    ...CONFIG_OPTION,
    json: { type: "boolean" },
    database: { type: "string", multiple: true },
    source: { type: "string", multiple: true },
    "chunk-rows": { type: "string" },
    "wait-seconds": { type: "string" },
  },
  async run(flags, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    const chunkRows = wholeNumber(flags["chunk-rows"], "--chunk-rows", DEFAULT_CHUNK_ROWS, 1);
    const waitSeconds = wholeNumber(
      flags["wait-seconds"],
      "--wait-seconds",
      DEFAULT_WAIT_SECONDS,
      0,
    );
    const config = await withDiscovered(
      (await expandAllTables(await findAndLoadConfig(flags.config as string | undefined))).config,
    );
    const picked = filterSources(config, {
      databases: (flags.database as string[] | undefined) ?? [],
      sids: (flags.source as string[] | undefined) ?? [],
    });
    const report = await verifyConfig(picked, {
      chunkRows,
      waitSeconds,
      concurrency: DEFAULT_CONCURRENCY,
    });
    if (flags.json) printJson(report);
    else for (const line of formatVerifyReport(report)) console.log(line);
    return report.equal ? EXIT_OK : EXIT_FAILURE;
  },
};
