/**
 * `kvsz switchover`: moves the writes of one source database to the
 * destination in one command (see lib/upgrade/switchover.ts), after a
 * confirmation on a terminal; `--abort` lifts the source's fence.
 */
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
import type { Config } from "../config/types.ts";
import { describeUrl } from "../pg/describe.ts";
import { fencedDatabaseOf } from "../upgrade/fence.ts";
import { verifyConfig } from "../verify/verify.ts";
import { formatRow } from "../verify/report.ts";
import {
  abortSwitchover,
  type PgBouncerFence,
  switchover,
  type SwitchoverSource,
  SwitchoverStepError,
  type VerifyLevel,
} from "../upgrade/switchover.ts";

/** Default of `--max-lag-bytes`: 16 MiB. */
const DEFAULT_MAX_LAG_BYTES = 16 * 1024 * 1024;
/** Default of `--timeout-seconds`. */
const DEFAULT_TIMEOUT_SECONDS = 60;

/** The one configured source `--database` and `--source` select; anything else is a usage error. */
export function selectSource(config: Config, database?: string, sid?: string): SwitchoverSource {
  const all = config.databases.flatMap((db) => db.urls.map((source) => ({ db, source })));
  const selected = all.filter((t) =>
    (database === undefined || t.db.database === database) &&
    (sid === undefined || t.source.sid === sid)
  );
  const known = all.map((t) => `--database ${t.db.database} --source ${t.source.sid}`).join(", ");
  if (selected.length === 1) return selected[0];
  if (selected.length === 0) {
    throw new UsageError(
      all.length === 0
        ? "the config has no sources"
        : `no configured source matches ${
          [database && `--database ${database}`, sid && `--source ${sid}`].filter(Boolean).join(" ")
        } (configured: ${known})`,
    );
  }
  throw new UsageError(
    `a switchover moves one source and ${selected.length} match: choose one with --database and --source (configured: ${known})`,
  );
}

/** A positive whole number of a flag, or a usage error naming it. */
function positiveNumber(flags: Record<string, unknown>, name: string, fallback: number): number {
  const raw = flags[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    throw new UsageError(`--${name} wants a positive number, not ${JSON.stringify(raw)}`);
  }
  return n;
}

/** The `--pgbouncer` flags; a usage error for its companions without it. */
function pgbouncerOf(
  flags: Record<string, unknown>,
  sourceUrl: string,
): PgBouncerFence | undefined {
  const url = flags.pgbouncer as string | undefined;
  if (url === undefined) {
    for (const name of ["pgbouncer-database", "pgbouncer-repoint"]) {
      if (flags[name] !== undefined) throw new UsageError(`--${name} needs --pgbouncer URL`);
    }
    return undefined;
  }
  const repoint = flags["pgbouncer-repoint"] as string | undefined;
  return {
    url,
    database: (flags["pgbouncer-database"] as string | undefined) ?? fencedDatabaseOf(sourceUrl),
    ...(repoint ? { repoint } : {}),
  };
}

/** `kvsz verify` of the one source `target` (for `--verify full`), as the switchover reports it. */
async function verifyChecksums(
  config: Config,
  target: SwitchoverSource,
): Promise<{ compared: number; different: string[] }> {
  const scoped = { ...config, databases: [{ ...target.db, urls: [target.source] }] };
  const report = await verifyConfig(scoped, { waitSeconds: 5 });
  const different = report.tables
    .filter((t) => t.verdict === "different" || t.verdict === "error")
    .map((t) => {
      const rows = t.rowDifferences.slice(0, 3).map(formatRow);
      const what = [
        ...(t.reason ? [t.reason] : []),
        ...(t.rowDifferenceCount > 0
          ? [`${t.rowDifferenceCount} row(s) differ (${rows.join(", ")})`]
          : []),
        ...(t.differingChunks > 0 && t.rowDifferenceCount === 0 ? ["contents differ"] : []),
        ...t.schemaDifferences.map((d) => `schema: ${d}`),
      ];
      return `${t.target}: ${what.join(", ")}`;
    });
  return { compared: report.summary.equal + report.summary.different, different };
}

/** Asks on the terminal; true for `y` or `yes`. */
function askOnTerminal(lines: string[], question: string): boolean {
  for (const line of lines) console.log(line);
  const answer = prompt(`${question} [y/N]`);
  return /^\s*y(es)?\s*$/i.test(answer ?? "");
}

export const switchoverCommand: Command = {
  name: "switchover",
  summary: "stop a source's writes and hand over to the destination (an upgrade's cutover)",
  help: `Usage: kvsz switchover [--config FILE] [--database NAME] [--source SID] [--yes] [--abort]
                       [--max-lag-bytes N] [--timeout-seconds N] [--verify counts|full|none]
                       [--reverse] [--pgbouncer URL [--pgbouncer-database NAME]
                       [--pgbouncer-repoint COMMAND]]

The cutover of an upgrade, as one command, while kvsz run streams the source.
Each step is printed with its duration:
  1. privileges: the role may fence the database (owner or superuser, and
     pg_signal_backend); no prepared transactions are pending
  2. lag: kvsz run streams the source (its slot is active) and the
     destination is at most --max-lag-bytes behind; otherwise nothing is fenced
  3. fence: with --pgbouncer, PAUSE of the database at PgBouncer first (its
     clients' queries wait in its queue instead of failing); then
     ALTER DATABASE … SET default_transaction_read_only = on, then every
     other client session of the database (every role) is ended; new
     sessions are read-only. kvsz's walsender is left alone
  4. final LSN: the source's WAL position once no session can write, waited
     for until kvsz.progress at the destination has applied it
  5. sequences: every sequence of the source (owned by a column or not) is
     set at the destination (setval of last_value and is_called), read back
  6. counts: each mapped table's rows, source against destination
  7. with --reverse: the reverse stream's slot on the destination (made before
     the fence), its start recorded in the source, its config written beside
     this one (<config>.<database>.reverse.yaml); kvsz run stops streaming
     the source
  8. the write downtime: from the fence to the destination being ready

A failed or interrupted step leaves the fence as it is: run kvsz switchover
again (it finds the fence on and goes on), or kvsz switchover --abort to lift
it. --abort touches only the source: it works with the destination down.

On a terminal kvsz asks first; without a terminal, --yes is required.
Exit status: 0 done, 1 a step failed (it says what to do), 2 bad config or flags.

${CONFIG_HELP}
      --database NAME       the database entry to switch over (needed when the
                            config has several)
      --source SID          the source of that entry by its sid (needed when it
                            has several); --sid SID is the same
  -y, --yes                 do not ask for confirmation
      --abort               lift the fence (a rollback to the source)
      --max-lag-bytes N     refuse to fence when the destination is more than N
                            bytes of WAL behind (default 16777216, 16 MiB)
      --timeout-seconds N   how long to wait for the final LSN (default 60)
      --verify LEVEL        counts (default): row counts per table; none: skip;
                            full: counts, then kvsz verify's checksums and
                            schema of every table (reads every row, fenced)
      --pgbouncer URL       PgBouncer's admin console (…/pgbouncer): PAUSE the
                            database there at the fence; --abort RESUMEs it.
                            Needs pool_mode transaction (or statement)
      --pgbouncer-database NAME
                            the database name at PgBouncer (default: the
                            source URL's)
      --pgbouncer-repoint COMMAND
                            a shell command that points PgBouncer at the
                            destination (e.g. copies a prepared pgbouncer.ini),
                            run once the destination is ready; then RELOAD and
                            RESUME. Without it kvsz prints what to do
      --reverse             prepare the reverse stream: kvsz run --config with
                            the file it writes carries the destination's
                            changes back into the source (a rollback loses
                            nothing)`,
  options: {
    ...CONFIG_OPTION,
    database: { type: "string" },
    sid: { type: "string" },
    source: { type: "string" },
    yes: { type: "boolean", short: "y" },
    abort: { type: "boolean" },
    reverse: { type: "boolean" },
    pgbouncer: { type: "string" },
    "pgbouncer-database": { type: "string" },
    "pgbouncer-repoint": { type: "string" },
    "max-lag-bytes": { type: "string" },
    "timeout-seconds": { type: "string" },
    verify: { type: "string" },
  },
  async run(flags) {
    const interactive = !flags.yes;
    if (interactive && !Deno.stdin.isTerminal()) {
      throw new UsageError(
        "refusing to switch over without confirmation: stdin is not a terminal; pass --yes to go on without asking",
      );
    }
    const verify = (flags.verify ?? "counts") as string;
    if (!["counts", "full", "none"].includes(verify)) {
      throw new UsageError(`--verify wants counts, full or none, not ${JSON.stringify(verify)}`);
    }
    const maxLagBytes = positiveNumber(flags, "max-lag-bytes", DEFAULT_MAX_LAG_BYTES);
    const timeoutSeconds = positiveNumber(flags, "timeout-seconds", DEFAULT_TIMEOUT_SECONDS);
    const config = await withDiscovered(
      (await expandAllTables(await findAndLoadConfig(flags.config as string | undefined))).config,
    );
    const target = selectSource(
      config,
      flags.database as string | undefined,
      (flags.sid ?? flags.source) as string | undefined,
    );
    const where = `database ${target.db.database} sid ${target.source.sid} (${
      describeUrl(target.source.url)
    })`;
    const print = (line: string) => console.log(line);
    const pgbouncer = pgbouncerOf(flags, target.source.url);
    try {
      if (flags.abort) {
        if (
          interactive && !askOnTerminal(
            [`kvsz switchover --abort lifts the fence of ${where}: its clients can write again.`],
            "Lift the fence?",
          )
        ) {
          print("not confirmed: nothing done");
          return EXIT_FAILURE;
        }
        await abortSwitchover(config, target, { print, pgbouncer });
        return EXIT_OK;
      }
      if (
        interactive && !askOnTerminal(
          [
            `kvsz switchover makes ${where} read-only and ends its client sessions,`,
            `then hands over to ${describeUrl(config.destination.url)}.`,
          ],
          "Switch over?",
        )
      ) {
        print("not confirmed: nothing done");
        return EXIT_FAILURE;
      }
      await switchover(config, target, {
        maxLagBytes,
        timeoutSeconds,
        verify: verify as VerifyLevel,
        reverse: flags.reverse === true,
        checksums: () => verifyChecksums(config, target),
        pgbouncer,
        print,
      });
      return EXIT_OK;
    } catch (e) {
      if (e instanceof SwitchoverStepError) return EXIT_FAILURE;
      throw e;
    }
  },
};
