/**
 * `kvsz drop`: removes the replication slots and publications kvsz created
 * on the sources (named `kvsz_<database>_<sid>`, nothing else), refusing
 * while a slot is in use, after a confirmation on a terminal.
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
import { withDiscovered } from "./discovered.ts";
import type { Config } from "../config/types.ts";
import { connect } from "../pg/connect.ts";
import { destinationParams } from "../engine/destination.ts";
import { partitionsPublicationName } from "../source/publication.ts";
import { kvszObjectName, quoteIdent } from "../pg/identifiers.ts";
import { redactText } from "../pg/redact.ts";
import { describeUrl } from "../pg/describe.ts";

/** One configured source, selected by the filters. */
interface Target {
  database: string;
  sid: string;
  url: string;
  /** Name of its slot and publication. */
  name: string;
  /** `source <db> sid <sid> (host:port/db)`, no password. */
  label: string;
}

/** What a source holds, read before anything is dropped. */
interface Inspection {
  target: Target;
  error: string | null;
  slot: { exists: boolean; activePid: number | null; active: boolean };
  publication: boolean;
  /** Its partitions publication exists (`partitionsPublicationName`). */
  partitions: boolean;
}

/** Options of {@link dropSources}. */
export interface DropOptions {
  database?: string;
  sid?: string;
  /** Also delete the sources' rows from the destination's kvsz.progress, kvsz.synced_tables and kvsz.owners. */
  progress?: boolean;
  /** Asked before dropping when set; returns true to go on. */
  confirm?: (plan: string[]) => boolean | Promise<boolean>;
  /** Receives each output line (default: console.log). */
  print?: (line: string) => void;
  /** Seconds to wait for each connection (default 10). */
  connectTimeout?: number;
}

/**
 * Drops the slot and publication of every configured source matching the
 * filters; returns the exit code (0 done, 1 something failed or declined).
 */
export async function dropSources(config: Config, opts: DropOptions = {}): Promise<number> {
  const print = opts.print ?? ((line: string) => console.log(line));
  const secrets = [
    config.destination.url,
    ...config.databases.flatMap((d) => d.urls.map((u) => u.url)),
  ];
  const targets = selectTargets(config, opts.database, opts.sid);

  const inspections = await Promise.all(
    targets.map((t) => inspect(t, secrets, opts.connectTimeout ?? 10)),
  );
  let failed = false;
  const droppable: Inspection[] = [];
  for (const i of inspections) {
    if (i.error !== null) {
      failed = true;
      print(`FAIL      ${i.target.label}: ${i.error} — nothing dropped there`);
    } else if (i.slot.active) {
      failed = true;
      print(
        `FAIL      slot ${i.target.name} on ${i.target.label}: active, in use by process ${
          i.slot.activePid ?? "?"
        } — fix: stop the kvsz (or other client) streaming it, then run kvsz drop again; nothing dropped there`,
      );
    } else {
      droppable.push(i);
    }
  }

  if (opts.confirm && droppable.length > 0) {
    const plan = planLines(droppable, opts.progress ?? false, config);
    if (plan.length > 0 && !(await opts.confirm(plan))) {
      print("not confirmed: nothing dropped");
      return EXIT_FAILURE;
    }
  }

  const dropped: Target[] = [];
  const step = { secrets, print, connectTimeout: opts.connectTimeout ?? 10 };
  for (const i of droppable) {
    if (await dropOne(i, step)) dropped.push(i.target);
    else failed = true;
  }
  if (opts.progress && dropped.length > 0) {
    if (!(await deleteProgress(config, dropped, step))) failed = true;
  }
  return failed ? EXIT_FAILURE : EXIT_OK;
}

/** The configured sources matching `--database` and `--sid`; none is a usage error. */
function selectTargets(config: Config, database?: string, sid?: string): Target[] {
  const all = config.databases.flatMap((db) =>
    db.urls.map((u) => ({
      database: db.database,
      sid: u.sid,
      url: u.url,
      name: kvszObjectName(db.database, u.sid),
      label: `source ${db.database} sid ${u.sid} (${describeUrl(u.url)})`,
    }))
  );
  const selected = all.filter((t) =>
    (database === undefined || t.database === database) && (sid === undefined || t.sid === sid)
  );
  if (selected.length === 0) {
    const filter = [
      database !== undefined ? `--database ${database}` : "",
      sid !== undefined ? `--sid ${sid}` : "",
    ].filter(Boolean).join(" ");
    const known = all.map((t) => `${t.database} sid ${t.sid}`).join(", ") || "none";
    throw new UsageError(
      filter
        ? `no configured source matches ${filter} (configured: ${known})`
        : `the config has no sources`,
    );
  }
  return selected;
}

async function inspect(t: Target, secrets: string[], timeout: number): Promise<Inspection> {
  const result: Inspection = {
    target: t,
    error: null,
    slot: { exists: false, active: false, activePid: null },
    publication: false,
    partitions: false,
  };
  const sql = connect(t.url, { connectTimeout: timeout });
  try {
    const slots = await sql.unsafe(
      `SELECT active, active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`,
      [t.name],
    );
    if (slots.length > 0) {
      result.slot = {
        exists: true,
        active: slots[0].active,
        activePid: slots[0].active_pid ?? null,
      };
    }
    const pubs = await sql.unsafe(
      `SELECT pubname FROM pg_catalog.pg_publication WHERE pubname IN ($1, $2)`,
      [t.name, partitionsPublicationName(t.name)],
    );
    result.publication = pubs.some((p) => p.pubname === t.name);
    result.partitions = pubs.length > (result.publication ? 1 : 0);
  } catch (e) {
    result.error = `cannot read its slot and publication: ${errorText(e, secrets)}`;
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
  return result;
}

function planLines(droppable: Inspection[], progress: boolean, config: Config): string[] {
  const lines: string[] = [];
  for (const i of droppable) {
    const what = [
      i.slot.exists ? `slot ${i.target.name}` : "",
      i.publication ? `publication ${i.target.name}` : "",
      i.partitions ? `publication ${partitionsPublicationName(i.target.name)}` : "",
    ].filter(Boolean).join(" and ");
    if (what) lines.push(`${what} on ${i.target.label}`);
  }
  if (progress) {
    lines.push(
      `the progress of ${
        droppable.map((i) => `${i.target.database} sid ${i.target.sid}`).join(", ")
      } in destination ${describeUrl(config.destination.url)} (kvsz.progress, kvsz.synced_tables)`,
    );
  }
  return lines;
}

/** Options of {@link dropOne} and {@link deleteProgress}. */
interface StepOptions {
  /** Connection URLs whose passwords are kept out of the output. */
  secrets: string[];
  /** Receives each output line. */
  print: (line: string) => void;
  /** Seconds to wait for a source connection (`dropOne` only). */
  connectTimeout: number;
}

/** Drops the slot then the publication of one source; false when either failed. */
async function dropOne(
  i: Inspection,
  { secrets, print, connectTimeout }: StepOptions,
): Promise<boolean> {
  const t = i.target;
  const sql = connect(t.url, { connectTimeout });
  try {
    // Slot first: if it became active meanwhile, the publication stays for its reader.
    try {
      const [row] = await sql.unsafe(
        `SELECT pg_catalog.pg_drop_replication_slot(slot_name) IS NULL AS dropped
           FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`,
        [t.name],
      );
      print(`${row ? "dropped  " : "not found"} slot ${t.name} on ${t.label}`);
    } catch (e) {
      print(
        `FAIL      slot ${t.name} on ${t.label}: ${
          errorText(e, secrets)
        } — fix: stop the kvsz (or other client) streaming it, then run kvsz drop again; publication kept`,
      );
      return false;
    }
    const partitions = partitionsPublicationName(t.name);
    const pubs = await sql.unsafe(
      `SELECT pubname FROM pg_catalog.pg_publication WHERE pubname IN ($1, $2)`,
      [t.name, partitions],
    );
    for (const name of [t.name, partitions]) {
      const found = pubs.some((p) => p.pubname === name);
      if (found) await sql.unsafe(`DROP PUBLICATION IF EXISTS ${quoteIdent(name)}`);
      // The partitions publication exists only for partitions_regex on a partitioned table.
      if (found || name === t.name) {
        print(`${found ? "dropped  " : "not found"} publication ${name} on ${t.label}`);
      }
    }
    return true;
  } catch (e) {
    print(`FAIL      publication ${t.name} on ${t.label}: ${errorText(e, secrets)}`);
    return false;
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

/** Deletes the progress rows of `targets` from the destination, in one transaction. */
async function deleteProgress(
  config: Config,
  targets: Target[],
  { secrets, print }: StepOptions,
): Promise<boolean> {
  const where = `destination ${describeUrl(config.destination.url)}`;
  const sql = connect(config.destination.url, { params: destinationParams(config) });
  try {
    const [reg] = await sql.unsafe(
      `SELECT to_regclass('kvsz.progress') IS NOT NULL AS progress,
              to_regclass('kvsz.synced_tables') IS NOT NULL AS synced,
              to_regclass('kvsz.owners') IS NOT NULL AS owners`,
    );
    await sql.begin(async (tx) => {
      for (const t of targets) {
        const who = `${t.database} sid ${t.sid}`;
        let progress = 0;
        let synced = 0;
        if (reg.progress) {
          progress = (await tx.unsafe(
            `DELETE FROM kvsz.progress WHERE database = $1 AND sid = $2`,
            [t.database, t.sid],
          )).count;
        }
        if (reg.synced) {
          synced = (await tx.unsafe(
            `DELETE FROM kvsz.synced_tables WHERE database = $1 AND sid = $2`,
            [t.database, t.sid],
          )).count;
        }
        if (reg.owners) { // which process claimed it last: gone with its progress
          await tx.unsafe(`DELETE FROM kvsz.owners WHERE database = $1 AND sid = $2`, [
            t.database,
            t.sid,
          ]);
        }
        print(
          progress + synced > 0
            ? `deleted   progress of ${who} in ${where} (${progress} progress row${
              progress === 1 ? "" : "s"
            }, ${synced} synced table${synced === 1 ? "" : "s"})`
            : `not found progress of ${who} in ${where}`,
        );
      }
    });
    return true;
  } catch (e) {
    print(`FAIL      progress in ${where}: ${errorText(e, secrets)}`);
    return false;
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

function errorText(e: unknown, secrets: string[]): string {
  const message = (e as Error)?.message ?? String(e);
  return redactText(message, secrets).replace(/\s+/g, " ").trim();
}

/** Asks on the terminal; true for `y` or `yes`. */
function askOnTerminal(plan: string[]): boolean {
  console.log("kvsz drop will remove:");
  for (const line of plan) console.log(`  ${line}`);
  const answer = prompt("Drop them? [y/N]");
  return /^\s*y(es)?\s*$/i.test(answer ?? "");
}

export const dropCommand: Command = {
  name: "drop",
  summary: "remove the replication slots and publications kvsz created",
  help: `Usage: kvsz drop [--config FILE] [--database D] [--sid S] [--yes] [--progress]

Drops, on every configured source (or those --database and --sid select),
the replication slot and the publication kvsz created, both named
kvsz_<database>_<sid>; nothing else is ever dropped. A forgotten slot keeps
WAL on its source until the disk fills: drop the slots of sources kvsz no
longer streams.

A slot in use (a kvsz run, or another client, streaming it) is not dropped:
that source is reported as FAIL with the process id, and nothing of it is
dropped. On a terminal, kvsz lists what it will drop and asks first; without
a terminal, --yes is required. The next kvsz run on a dropped source creates
a new slot and copies every table again (merged into the rows already there).

One line per object: "dropped", "not found" or "FAIL".

Exit status: 0 when everything selected is gone, 1 when something could not
be dropped (or the confirmation was declined), 2 for a bad config or flags.

${CONFIG_HELP}
      --database D    only the sources of database D
      --sid S         only the sources with sid S
  -y, --yes           do not ask for confirmation
      --progress      also delete the sources' rows from the destination's
                      kvsz.progress, kvsz.synced_tables and kvsz.owners (for a source gone
                      for good: a later run treats it as new and copies every
                      table without merging, so empty its target rows first)`,
  options: {
    ...CONFIG_OPTION,
    database: { type: "string" },
    sid: { type: "string" },
    yes: { type: "boolean", short: "y" },
    progress: { type: "boolean" },
  },
  async run(flags) {
    const interactive = !flags.yes;
    if (interactive && !Deno.stdin.isTerminal()) {
      throw new UsageError(
        "refusing to drop without confirmation: stdin is not a terminal; pass --yes to drop without asking",
      );
    }
    const config = await withDiscovered(
      await findAndLoadConfig(flags.config as string | undefined),
    );
    return dropSources(config, {
      database: flags.database as string | undefined,
      sid: flags.sid as string | undefined,
      progress: Boolean(flags.progress),
      confirm: interactive ? askOnTerminal : undefined,
    });
  },
};
