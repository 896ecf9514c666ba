/**
 * `kvsz switchover`'s steps, each timed and printed: the lag gate, the fence,
 * the final LSN applied at the destination, the sequences, the counts, and
 * the write downtime. A failed step leaves the fence as it is (on once it was
 * put up): the command can be run again, or `--abort` lifts the fence.
 */
import { connect, serverMajor, type Sql } from "../pg/connect.ts";
import type { Config, DatabaseMapping, SourceUrl } from "../config/types.ts";
import { formatLsn, parseLsn } from "../pg/lsn.ts";
import { kvszObjectName } from "../pg/identifiers.ts";
import { redactText } from "../pg/redact.ts";
import { describeUrl } from "../pg/describe.ts";
import { readProgress } from "../apply/progress.ts";
import {
  fenceDatabase,
  fencedDatabaseOf,
  isFenced,
  missingFencePrivileges,
  preparedTransactions,
  unfenceDatabase,
} from "./fence.ts";
import { copySequences } from "./sequences.ts";
import { pauseDatabase, resumeDatabase } from "./pgbouncer.ts";
import { compareCounts } from "./counts.ts";
import { recordFence, recordReady, recordReverse, reverseConfigOf } from "./switchover_record.ts";
import {
  createReverseSlot,
  endForwardStream,
  planReverse,
  recordReverseStart,
  reverseServerProblems,
  type ReverseStream,
  writeReverseConfig,
} from "./reverse.ts";

/** How far the destination's rows are checked: `full` adds `kvsz verify`'s checksums to the counts. */
export type VerifyLevel = "none" | "counts" | "full";

/** The one source a switchover moves off. */
export interface SwitchoverSource {
  db: DatabaseMapping;
  source: SourceUrl;
}

/** Options of {@link switchover} and {@link abortSwitchover}. */
export interface SwitchoverOptions {
  /** Refuse to fence when the destination is further behind than this many bytes of WAL. */
  maxLagBytes: number;
  /** Seconds to wait for the destination to apply the source's final LSN. */
  timeoutSeconds: number;
  verify: VerifyLevel;
  /** Prepare the reverse stream (see reverse.ts) before the destination is ready. */
  reverse?: boolean;
  /**
   * With `verify: "full"`: compares every table's rows and schema (`kvsz
   * verify` of this source); returns the tables compared and one line per
   * difference.
   */
  checksums?: () => Promise<{ compared: number; different: string[] }>;
  /** Fence through PgBouncer too (see pgbouncer.ts). */
  pgbouncer?: PgBouncerFence;
  /** Receives each output line. */
  print: (line: string) => void;
}

/** The PgBouncer in front of the source (`--pgbouncer`). */
export interface PgBouncerFence {
  /** Its admin console (database `pgbouncer`). */
  url: string;
  /** The database name its clients use. */
  database: string;
  /** A shell command pointing it at the destination, run once the destination is ready; then RELOAD and RESUME. */
  repoint?: string;
}

/** A step failed: its line is printed; the message says what to do. */
export class SwitchoverStepError extends Error {}

/** Startup settings of the switchover's own source session: its name, and read-write under the fence. */
const SOURCE_SESSION = {
  application_name: "kvsz switchover",
  default_transaction_read_only: "off",
};

/** Milliseconds between looks at the destination's progress. */
const POLL_MS = 200;
/** Milliseconds between logical messages that give the walsender WAL to send. */
const NUDGE_MS = 2000;

/** Runs one step: prints `✓ <what> (N.NN s)`, or `✗ <problem> (N.NN s)` and throws. */
async function step(
  print: (line: string) => void,
  secrets: string[],
  fn: () => Promise<string>,
): Promise<void> {
  const started = performance.now();
  const took = () => `${((performance.now() - started) / 1000).toFixed(2)} s`;
  let done: string;
  try {
    done = await fn();
  } catch (e) {
    const message = redactText((e as Error)?.message ?? String(e), secrets)
      .replace(/\s+/g, " ").trim();
    print(`✗ ${message} (${took()})`);
    throw new SwitchoverStepError(message);
  }
  print(`✓ ${done} (${took()})`);
}

/** Every URL of the config (and PgBouncer's), whose passwords never reach the output. */
function secretsOf(config: Config, pgbouncer?: PgBouncerFence): string[] {
  return [
    config.destination.url,
    ...config.databases.flatMap((d) => d.urls.map((u) => u.url)),
    ...(pgbouncer ? [pgbouncer.url] : []),
  ];
}

/**
 * Switches `target` over to the destination; returns normally when the
 * destination is ready (every step printed), throws
 * {@link SwitchoverStepError} after printing the step that failed.
 */
export async function switchover(
  config: Config,
  target: SwitchoverSource,
  opts: SwitchoverOptions,
): Promise<void> {
  const { print, pgbouncer } = opts;
  const secrets = secretsOf(config, pgbouncer);
  const database = target.db.database;
  const onSource = fencedDatabaseOf(target.source.url);
  const sid = target.source.sid;
  const key = { database, sid };
  const slot = kvszObjectName(database, sid);
  const src = connect(target.source.url, { params: SOURCE_SESSION });
  const dst = connect(config.destination.url, {
    params: config.destination.overrideReadOnly ? { default_transaction_read_only: "off" } : {},
  });
  const run = (fn: () => Promise<string>) => step(print, secrets, fn);
  let reverse = null as ReverseStream | null; // set in the first step
  try {
    print(
      `switchover of database ${database} sid ${sid} (${describeUrl(target.source.url)}) to ${
        describeUrl(config.destination.url)
      }`,
    );
    let fenced = false;
    await run(async () => {
      fenced = await isFenced(src, onSource);
      const missing = await missingFencePrivileges(src, onSource);
      if (missing.length > 0) {
        throw new Error(`missing privileges on the source: ${missing.join("; ")}`);
      }
      const prepared = await preparedTransactions(src, onSource);
      if (prepared.length > 0) {
        throw new Error(
          `database ${onSource} has prepared transactions (${
            prepared.join(", ")
          }), which could commit after the fence: COMMIT PREPARED or ROLLBACK PREPARED them, then run again`,
        );
      }
      if (opts.reverse) {
        const plan = planReverse(config, target);
        const problems = Array.isArray(plan) ? plan : await reverseServerProblems(dst, plan);
        if (problems.length > 0) {
          throw new Error(`--reverse: ${problems.join("; ")}; nothing was fenced`);
        }
        reverse = plan as ReverseStream;
      }
      return `privileges to fence database ${onSource}`;
    });

    // A re-run after the reverse step: the forward stream was stopped once it had applied all.
    const forwardStopped = fenced && await reverseConfigOf(dst, key) !== null;
    await run(async () => {
      if (forwardStopped) {
        return `kvsz run stopped streaming this source after it applied the final LSN (an earlier --reverse run)`;
      }
      const [{ active }] = await src.unsafe(
        `SELECT coalesce(bool_or(active), false) AS active
           FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`,
        [slot],
      );
      const lag = await lagBytes(src, dst, key);
      const behind = lag === null ? "" : ` (the destination is ${humanBytes(lag)} behind)`;
      if (!active) {
        throw new Error(
          `kvsz run is not streaming this source: slot ${slot} is not active${behind}` +
            (fenced ? "" : "; nothing was fenced") +
            ` — start kvsz run with this config, let it catch up, then run kvsz switchover again`,
        );
      }
      if (lag === null) {
        throw new Error(
          `the destination has no progress for ${database} sid ${sid} yet (kvsz.progress): ` +
            `let kvsz run finish its initial copy, then run again; nothing was fenced`,
        );
      }
      if (!fenced && lag > BigInt(opts.maxLagBytes)) {
        throw new Error(
          `the destination is ${humanBytes(lag)} behind the source, more than --max-lag-bytes ` +
            `${
              humanBytes(BigInt(opts.maxLagBytes))
            }: let kvsz run catch up (kvsz status shows the lag), ` +
            `then run again; nothing was fenced`,
        );
      }
      return `lag ${humanBytes(lag)}, kvsz run streaming (slot ${slot} active)`;
    });

    if (reverse) {
      const plan = reverse;
      await run(async () => {
        const slot = await createReverseSlot({ old: src, dst }, plan, await serverMajor(dst));
        return `reverse slot ${plan.slot} ${
          slot.created ? "created" : "found"
        } on the destination at ${formatLsn(slot.lsn)} (${plan.mappings.length} tables)`;
      });
    }

    let fencedAt = new Date();
    await run(async () => {
      const paused = pgbouncer &&
        await pauseDatabase(pgbouncer.url, pgbouncer.database, opts.timeoutSeconds);
      const fence = await fenceDatabase(src, onSource);
      fencedAt = await recordFence(dst, key, {
        fencedAt: new Date(),
        keepEarlier: fence.alreadyFenced,
      });
      const ended = `${fence.sessionsEnded} session${fence.sessionsEnded === 1 ? "" : "s"} ended`;
      const pause = pgbouncer
        ? `PgBouncer ${
          paused ? "had paused" : "paused"
        } database ${pgbouncer.database} (its clients wait); `
        : "";
      return pause +
        (fence.alreadyFenced
          ? `database ${onSource} already fenced since ${clock(fencedAt)}: ${ended}`
          : `fenced database ${onSource}: read-only by default, ${ended}`);
    });

    let finalLsn = 0n;
    await run(async () => {
      if (forwardStopped) {
        finalLsn = (await readProgress(dst, key.database, key.sid))?.endLsn ?? 0n;
        return `final LSN applied at the destination before the forward stream stopped (${
          formatLsn(finalLsn)
        })`;
      }
      // The insert position: past every commit, flushed or not (synchronous_commit off).
      const [{ lsn }] = await src.unsafe(
        `SELECT pg_catalog.pg_current_wal_insert_lsn()::text AS lsn`,
      );
      finalLsn = parseLsn(lsn);
      await waitForApplied(src, dst, { key, finalLsn, timeoutSeconds: opts.timeoutSeconds });
      return `final LSN ${formatLsn(finalLsn)} applied at the destination`;
    });
    await run(async () => {
      const copy = await copySequences(src, dst, { config, mappings: target.db.tables });
      const problems = [
        ...(copy.missing.length > 0
          ? [`the destination lacks sequence(s) ${copy.missing.join(", ")}: create them there`]
          : []),
        ...(copy.mismatched.length > 0
          ? [`sequence(s) read back different: ${copy.mismatched.join("; ")}`]
          : []),
      ];
      if (problems.length > 0) {
        throw new Error(
          `${
            problems.join("; ")
          } — the source stays fenced; fix it and run kvsz switchover again ` +
            `(or kvsz switchover --abort to lift the fence)`,
        );
      }
      return `${copy.copied} sequence${copy.copied === 1 ? "" : "s"} copied and checked`;
    });

    if (opts.verify !== "none") {
      await run(async () => {
        const counts = await compareCounts(src, dst, {
          config,
          mappings: target.db.tables,
          sid,
          major: await serverMajor(src),
        });
        if (counts.different.length > 0) {
          throw new Error(
            `row counts differ: ${counts.different.join("; ")} — the source stays fenced; ` +
              `check kvsz status and the logs of kvsz run, then run kvsz switchover again ` +
              `(or kvsz switchover --abort to lift the fence)`,
          );
        }
        const skipped = counts.skipped.length > 0
          ? `; not compared: ${counts.skipped.join(", ")}`
          : "";
        return `${counts.compared} table${
          counts.compared === 1 ? "" : "s"
        }: counts equal${skipped}`;
      });
    }
    if (opts.verify === "full" && opts.checksums) {
      const checksums = opts.checksums;
      await run(async () => {
        const { compared, different } = await checksums();
        if (different.length > 0) {
          throw new Error(
            `rows or schema differ (kvsz verify): ${different.join("; ")} — the source stays ` +
              `fenced; fix the destination, then run kvsz switchover again ` +
              `(or kvsz switchover --abort to lift the fence)`,
          );
        }
        return `${compared} table${compared === 1 ? "" : "s"}: checksums and schema equal`;
      });
    }

    if (reverse) {
      const plan = reverse;
      await run(async () => {
        const from = await recordReverseStart(src, dst, plan);
        await writeReverseConfig(config, target, { plan, dst });
        await recordReverse(dst, key, plan.configPath);
        const ended = await endForwardStream(src, slot);
        return `reverse stream starts at ${
          formatLsn(from)
        } (nothing to copy): ${plan.configPath} ` +
          `written; kvsz run ${ended ? "stopped streaming" : "does not stream"} this source`;
      });
    }

    // Ready once sequences are copied and the counts checked: clients may write now.
    const readyAt = new Date();
    await recordReady(dst, key, { finalLsn: formatLsn(finalLsn), readyAt });
    let resumedAt = null as Date | null; // set by the PgBouncer step
    if (pgbouncer?.repoint) {
      const { repoint, database: name } = pgbouncer;
      await run(async () => {
        await runShell(repoint);
        await resumeDatabase(pgbouncer.url, name, { reload: true });
        resumedAt = new Date();
        return `PgBouncer repointed (${repoint}), reloaded, database ${name} resumed`;
      });
    }
    const end = resumedAt ?? readyAt;
    const downtime = ((end.getTime() - fencedAt.getTime()) / 1000).toFixed(2);
    print(
      `writes stopped at ${clock(fencedAt)}, destination ready at ${clock(readyAt)}${
        resumedAt ? `, PgBouncer resumed at ${clock(resumedAt)}` : ""
      }: write downtime ${downtime} s`,
    );
    if (pgbouncer && !resumedAt) {
      print(
        `PgBouncer holds the clients of ${pgbouncer.database}: point its [databases] entry at the ` +
          `destination, then on its admin console run RELOAD; RESUME ${pgbouncer.database};`,
      );
    }
    const pointClients = `  point the clients at the destination (${
      describeUrl(config.destination.url)
    });`;
    print(
      (reverse
        ? [
          "next:",
          pointClients,
          `  stop kvsz run, then stream the destination's changes back into the source:`,
          `    kvsz run --config ${reverse.configPath}`,
          `  to roll back: stop the clients, run kvsz switchover --config ${reverse.configPath}`,
          `  (the same steps the other way), then kvsz switchover --abort --config ${config.file}.`,
        ]
        : [
          "next:",
          pointClients,
          `  the source stays fenced (read-only by default); stop kvsz run when you no longer need it;`,
          `  to roll back instead, run kvsz switchover --abort: it lifts the fence on the source.`,
        ]).join("\n"),
    );
  } finally {
    await Promise.all([
      src.end({ timeout: 1 }).catch(() => {}),
      dst.end({ timeout: 1 }).catch(() => {}),
    ]);
  }
}

/**
 * Lifts the fence of `target`'s database (`--abort`); touches only the source,
 * so it works with the destination unreachable.
 */
export async function abortSwitchover(
  config: Config,
  target: SwitchoverSource,
  opts: Pick<SwitchoverOptions, "print" | "pgbouncer">,
): Promise<void> {
  const onSource = fencedDatabaseOf(target.source.url);
  const src = connect(target.source.url, { params: SOURCE_SESSION });
  const { pgbouncer } = opts;
  try {
    await step(opts.print, secretsOf(config, pgbouncer), async () => {
      const { wasFenced, sessionsEnded } = await unfenceDatabase(src, onSource);
      if (!wasFenced) return `database ${onSource} is not fenced: nothing to lift`;
      return `fence lifted on database ${onSource}: writes allowed again, ${sessionsEnded} ` +
        `session${
          sessionsEnded === 1 ? "" : "s"
        } opened while fenced ended (they reconnect read-write)`;
    });
    if (pgbouncer) {
      await step(opts.print, secretsOf(config, pgbouncer), async () => {
        const resumed = await resumeDatabase(pgbouncer.url, pgbouncer.database);
        return resumed
          ? `PgBouncer resumed database ${pgbouncer.database}: its clients go on`
          : `PgBouncer's database ${pgbouncer.database} is not paused: nothing to resume`;
      });
    }
  } finally {
    await src.end({ timeout: 1 }).catch(() => {});
  }
}

/** The source's current WAL position minus the destination's applied one, or null before any progress. */
async function lagBytes(
  src: Sql,
  dst: Sql,
  key: { database: string; sid: string },
): Promise<bigint | null> {
  const progress = await readProgress(dst, key.database, key.sid).catch(() => null);
  if (!progress) return null;
  const [{ lsn }] = await src.unsafe(`SELECT pg_catalog.pg_current_wal_lsn()::text AS lsn`);
  const lag = parseLsn(lsn) - progress.endLsn;
  return lag > 0n ? lag : 0n;
}

/**
 * Waits until the destination's `kvsz.progress.end_lsn` of the source reaches
 * `finalLsn`, writing a non-transactional logical message every few seconds
 * so that the walsender has WAL to send (and kvsz an idle position to record).
 */
async function waitForApplied(
  src: Sql,
  dst: Sql,
  opts: { key: { database: string; sid: string }; finalLsn: bigint; timeoutSeconds: number },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutSeconds * 1000;
  let nudged = 0;
  let applied = 0n;
  while (true) {
    const progress = await readProgress(dst, opts.key.database, opts.key.sid);
    applied = progress?.endLsn ?? 0n;
    if (applied >= opts.finalLsn) return;
    if (Date.now() >= deadline) break;
    if (Date.now() - nudged >= NUDGE_MS) {
      nudged = Date.now();
      await src.unsafe(`SELECT pg_catalog.pg_logical_emit_message(false, 'kvsz', 'switchover')`)
        .catch(() => {}); // only a nudge: kvsz's keepalives move the position all the same
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(
    `the destination has not applied the source's final LSN ${formatLsn(opts.finalLsn)} within ` +
      `${opts.timeoutSeconds} s (it is at ${formatLsn(applied)}, ${
        humanBytes(opts.finalLsn - applied)
      } behind): the source stays fenced; check that kvsz run is running and streaming it, ` +
      `then run kvsz switchover again, or run kvsz switchover --abort to lift the fence`,
  );
}

/** `HH:MM:SS` of a time, local. */
function clock(at: Date): string {
  return at.toTimeString().slice(0, 8);
}

/** Bytes as `512 B`, `1.2 kB`, `16.0 MB`. */
function humanBytes(bytes: bigint): string {
  const n = Number(bytes);
  if (n < 1000) return `${n} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let v = n / 1000;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/** Runs `command` with `sh -c`; throws with its output when it fails. */
async function runShell(command: string): Promise<void> {
  const out = await new Deno.Command("sh", { args: ["-c", command], stdin: "null" }).output();
  if (!out.success) {
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    throw new Error(
      `--pgbouncer-repoint command failed (exit ${out.code}): ${text.trim()} — the destination ` +
        `is ready and PgBouncer still holds the clients: repoint it, RELOAD and RESUME by hand`,
    );
  }
}
