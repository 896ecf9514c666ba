/** `kvsz validate`: checks a config against the live databases, writing nothing. */
import { type Command, CONFIG_HELP, CONFIG_OPTION, EXIT_FAILURE, EXIT_OK } from "./command.ts";
import { findAndLoadConfig } from "../config/load.ts";
import type { Config } from "../config/types.ts";
import { preflightSource } from "../preflight/source.ts";
import { preflightDestination, type SourceTables } from "../preflight/destination.ts";
import { formatCheck, printJson } from "./output.ts";
import { type Check } from "../preflight/check.ts";

/**
 * Runs every check of `config` (the sources in parallel, the destination's
 * reads alongside them), in a stable order.
 */
export async function validateConfig(
  config: Config,
  opts: { connectTimeout?: number } = {},
): Promise<Check[]> {
  const sourceResults = Promise.all(
    config.databases.flatMap((db) =>
      db.urls.map(async (url) => ({ db, result: await preflightSource(db, url, opts) }))
    ),
  );
  const tables = sourceResults.then((results) => {
    const byDatabase: SourceTables = new Map();
    for (const { db, result } of results) {
      if (result.reachable && !byDatabase.has(db.database)) {
        byDatabase.set(db.database, result.tables);
      }
    }
    return byDatabase;
  });
  const [results, destination] = await Promise.all([
    sourceResults,
    preflightDestination(config, tables, opts),
  ]);
  return [...results.flatMap((r) => r.result.checks), ...destination];
}

export const validateCommand: Command = {
  name: "validate",
  summary: "check the config against the real databases and say what is wrong",
  help: `Usage: kvsz validate [--config FILE] [--json]

Loads the config, then checks every source and the destination without
writing anything, one line per check:

  ok   <what>
  WARN <what>: <problem> — fix: <how>     (works, with a caveat)
  FAIL <what>: <problem> — fix: <how>     (kvsz run would fail)

Sources: reachable, wal_level = logical, REPLICATION privilege, a replication
connection allowed by pg_hba.conf, a free replication slot and WAL sender, the
publication, and each mapped table (exists, readable, replica identity).
Destination: reachable, schema kvsz, each target table (exists, privileges,
history columns, same column types as the source, replica identity key).

Exit status: 0 when nothing FAILs, 1 when a check fails, 2 for a bad config.

${CONFIG_HELP}
      --json          print the checks as a JSON array of {status, check, problem?, fix?}`,
  options: { ...CONFIG_OPTION, json: { type: "boolean" } },
  async run(flags) {
    const config = await findAndLoadConfig(flags.config as string | undefined);
    const checks = await validateConfig(config);
    const failed = checks.filter((c) => c.status === "FAIL").length;
    const warned = checks.filter((c) => c.status === "WARN").length;
    if (flags.json) {
      printJson(checks);
    } else {
      for (const c of checks) console.log(formatCheck(c));
      const ok = checks.length - failed - warned;
      console.log(
        `\n${config.file}: ${ok} ok, ${warned} warning${warned === 1 ? "" : "s"}, ${failed} failed`,
      );
    }
    return failed > 0 ? EXIT_FAILURE : EXIT_OK;
  },
};
