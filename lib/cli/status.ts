/**
 * `kvsz status`: replication health of every source — a summary (sources by
 * state, the most lagging, WAL retained), then per source its slot, lag, WAL
 * retained and progress when few sources are shown or a filter picks them.
 */
import {
  type Command,
  CONFIG_HELP,
  CONFIG_OPTION,
  EXIT_OK,
  shardOption,
  UsageError,
} from "./command.ts";
import { findAndLoadConfig } from "../config/load.ts";
import { expandAllTables } from "../preflight/all_tables.ts";
import { withDiscovered } from "./discovered.ts";
import type { Config } from "../config/types.ts";
import {
  collectStatus,
  MOST_LAGGING,
  SOURCE_STATES,
  type SourceState,
  type SourceStatus,
  type StatusReport,
  type StatusSummary,
} from "../observe/status_report.ts";
import { formatTable, printJson } from "./output.ts";
import { humanBytes, humanSeconds } from "../observe/human_units.ts";
import { SOURCE_CONCURRENCY } from "../preflight/servers.ts";
import { configForShard } from "../engine/shard.ts";

/** Up to this many sources (and always with a filter), the text output has one row per source. */
export const DETAIL_MAX_SOURCES = 20;

/** How many warnings and erroring sources the text lists when it shows the summary only. */
const SUMMARY_LIST = 10;

/** Which sources `--database` and `--source` pick (empty lists: every one). */
export interface SourceFilter {
  databases: string[];
  sids: string[];
}

/**
 * `config` narrowed to the sources of `filter`: of the named databases, with
 * the named sids (either list empty: any). A name that matches nothing is a
 * UsageError naming it.
 */
export function filterSources(config: Config, filter: SourceFilter): Config {
  const unknownDb = filter.databases.filter((n) => !config.databases.some((d) => d.database === n));
  const inDbs = config.databases.filter((d) =>
    filter.databases.length === 0 || filter.databases.includes(d.database)
  );
  const unknownSid = filter.sids.filter((sid) =>
    !inDbs.some((d) => d.urls.some((u) => u.sid === sid))
  );
  const problems = [
    ...unknownDb.map((n) => `no database "${n}" in ${config.file}`),
    ...unknownSid.map((sid) =>
      `no source with sid "${sid}" in ${
        filter.databases.length ? `database ${filter.databases.join(", ")} of ` : ""
      }${config.file}`
    ),
  ];
  if (problems.length > 0) throw new UsageError(problems.join("; "));
  const databases = inDbs
    .map((d) => ({
      ...d,
      urls: d.urls.filter((u) => filter.sids.length === 0 || filter.sids.includes(u.sid)),
    }))
    .filter((d) => d.urls.length > 0);
  return { ...config, databases };
}

/** Options of {@link formatStatus}. */
export interface FormatStatusOptions {
  /** One row per source whatever their number (a filter picked them). */
  detail?: boolean;
}

/**
 * Renders a status report: the summary, then (up to {@link DETAIL_MAX_SOURCES}
 * sources, or with `detail`) an aligned table with detail lines, the
 * destination, and the warnings (only the first few without the detail).
 */
export function formatStatus(report: StatusReport, opts: FormatStatusOptions = {}): string {
  const detail = opts.detail || report.sources.length <= DETAIL_MAX_SOURCES;
  const lines = [...formatSummary(report.summary), ""];
  if (detail) lines.push(...formatDetail(report), "");
  else lines.push(...formatErroring(report.sources));
  lines.push(formatDestination(report));
  const shown = detail ? report.warnings : report.warnings.slice(0, SUMMARY_LIST);
  for (const w of shown) lines.push(`WARN ${w}`);
  if (shown.length < report.warnings.length) {
    lines.push(
      `WARN ... and ${report.warnings.length - shown.length} more warnings: ` +
        "kvsz status --source SID or --json shows them all",
    );
  }
  return lines.join("\n");
}

const STATE_LABEL: Record<SourceState, string> = {
  streaming: "streaming",
  copying: "copying",
  erroring: "disconnected/erroring",
  stopped: "stopped",
  not_started: "not started",
};

/** The summary: sources by state, the most lagging, WAL retained. */
function formatSummary(s: StatusSummary): string[] {
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const states = SOURCE_STATES.map((k) => `${s.byState[k]} ${STATE_LABEL[k]}`).join(", ");
  const lines = [`${plural(s.sources, "source")} on ${plural(s.servers, "server")}: ${states}`];
  if (s.mostLagging.length === 0) {
    lines.push("most lagging: none behind (every slot confirmed all WAL)");
  } else {
    lines.push(`most lagging (WAL not yet confirmed):`);
    const rows = s.mostLagging.map((l) => [
      `  ${l.database} sid ${l.sid}`,
      l.endpoint,
      STATE_LABEL[l.state],
      humanBytes(l.lagBytes),
      humanSeconds(l.lagSeconds),
    ]);
    lines.push(formatTable(["  SOURCE", "ENDPOINT", "STATE", "LAG", "BEHIND"], rows));
  }
  const w = s.worstRetained;
  lines.push(
    w
      ? `WAL retained: ${humanBytes(s.walRetainedBytes)} in total (per server, what its oldest ` +
        `slot keeps), most by ${w.database} sid ${w.sid} (${w.endpoint}): ${
          humanBytes(w.retainedBytes)
        }`
      : "WAL retained: none (no kvsz slot)",
  );
  return lines;
}

/** Without the detail: the first erroring sources, each with its reason. */
function formatErroring(sources: SourceStatus[]): string[] {
  const erroring = sources.filter((s) => s.state === "erroring");
  if (erroring.length === 0) {
    return ["per source: kvsz status --source SID or --database NAME, every source: --json", ""];
  }
  const lines = [`disconnected/erroring:`];
  for (const s of erroring.slice(0, SUMMARY_LIST)) {
    lines.push(`  ${s.database} sid ${s.sid} (${s.endpoint}): ${sourceRow(s).at(-1)}`);
  }
  if (erroring.length > SUMMARY_LIST) {
    lines.push(`  ... and ${erroring.length - SUMMARY_LIST} more: kvsz status --json lists them`);
  }
  lines.push("per source: kvsz status --source SID or --database NAME, every source: --json", "");
  return lines;
}

/** One row per source and its detail lines (publication, drift, walsender). */
function formatDetail(report: StatusReport): string[] {
  const headers = [
    "SOURCE",
    "ENDPOINT",
    "SLOT",
    "LAG",
    "RETAINED",
    "WAL",
    "APPLIED LSN",
    "COMMIT TIME",
    "BEHIND",
    "ROWS C/A/H",
    "ANOMALIES",
    "NOTE",
  ];
  const rows = report.sources.map(sourceRow);
  const lines = [formatTable(headers, rows), ""];
  for (const s of report.sources) {
    if (!s.reachable) continue;
    const who = `${s.database} sid ${s.sid}`;
    const pub = s.publication;
    if (pub) {
      lines.push(
        `${who}: publication ${pub.name}: ${
          pub.exists ? (pub.tables.length ? pub.tables.join(", ") : "(no tables)") : "missing"
        }`,
      );
    }
    for (const t of s.drift) {
      lines.push(
        `${who}: table ${t.sourceTable} → ${t.target}: ${
          t.stoppedLsn === null ? "streaming" : `STOPPED at ${t.stoppedLsn}`
        }, column drift: ${
          t.columns.map((c) => `${c.column} (${c.kind}, since ${c.since})`).join(", ") || "-"
        }`,
      );
    }
    if (s.owner) {
      lines.push(
        `${who}: claimed by ${s.owner.owner} since ${s.owner.since.replace(/\.\d+/, "")}${
          s.owner.connected ? "" : " (that session has ended: no kvsz process holds it now)"
        }`,
      );
    }
    const r = s.replication;
    if (r) {
      lines.push(
        `${who}: walsender pid ${r.pid} ${r.state ?? "?"}, sent ${r.sentLsn ?? "-"} write ${
          r.writeLsn ?? "-"
        } flush ${r.flushLsn ?? "-"} replay ${r.replayLsn ?? "-"}, lag write ${
          humanSeconds(r.writeLagSeconds)
        } flush ${humanSeconds(r.flushLagSeconds)} replay ${humanSeconds(r.replayLagSeconds)}`,
      );
    }
  }
  return lines;
}

/** Where `status` read the progress from. */
function formatDestination(report: StatusReport): string {
  const d = report.destination;
  return `destination ${d.endpoint}: ${
    !d.reachable
      ? `unreachable: ${d.error}`
      : d.error
      ? `cannot read kvsz.progress: ${d.error}`
      : d.progressTable
      ? "progress read from kvsz.progress"
      : "no kvsz.progress table yet (kvsz run has not started)"
  }`;
}

function sourceRow(s: SourceStatus): string[] {
  const who = `${s.database} sid ${s.sid}`;
  if (!s.reachable) {
    return [
      who,
      s.endpoint,
      "-",
      "-",
      "-",
      "-",
      "-",
      "-",
      "-",
      "-",
      "-",
      `unreachable: ${s.error}`,
    ];
  }
  const slot = s.slot;
  const p = s.progress;
  const slotState = !slot ? "-" : !slot.exists ? "missing" : slot.active ? "active" : "inactive";
  const note = s.error
    ? `error: ${s.error}`
    : slot && !slot.exists
    ? `no slot ${slot.name} (kvsz run has not started)`
    : s.drift.some((t) => t.stoppedLsn !== null)
    ? "a table is stopped for column drift"
    : slot?.walStatus === "lost"
    ? `slot ${slot.name} lost WAL: sync again`
    : s.state === "copying"
    ? `copying: ${s.copy.copied} of ${s.copy.tables} tables copied`
    : s.warnings.length
    ? "see warnings"
    : "";
  return [
    who,
    s.endpoint,
    slotState,
    humanBytes(slot?.lagBytes),
    humanBytes(slot?.retainedBytes),
    slot?.walStatus ?? "-",
    p?.commitLsn ?? "-",
    p?.commitTime ? p.commitTime.replace(/\.\d+/, "") : "-",
    humanSeconds(s.lagSeconds),
    p ? `${p.rowsClone}/${p.rowsAppend}/${p.rowsHistory}` : "-",
    p ? String(p.anomalies) : "-",
    note,
  ];
}

export const statusCommand: Command = {
  name: "status",
  summary: "show replication health: sources by state, lag, WAL retained, progress",
  help:
    `Usage: kvsz status [--config FILE] [--database NAME]... [--source SID]... [--shard I/N] [--json]

First a summary: how many sources are streaming, copying (initial copy not
finished), disconnected/erroring (unreachable, a read failed, the slot lost
WAL, or a table stopped for column drift), stopped (a slot nothing streams:
kvsz is not running for it) or not started (no slot yet); the ${MOST_LAGGING} sources
furthest behind, by WAL not yet confirmed and seconds behind; and the WAL
retained for kvsz's slots (per server what its oldest slot keeps, summed)
with the slot retaining the most.

Then, with at most ${DETAIL_MAX_SOURCES} sources or with a filter, per source: the kvsz
replication slot (active, bytes not yet confirmed, WAL retained, wal_status),
its walsender, the tables its publication sends, and from the destination's
kvsz.progress the last applied commit, how far behind it is, rows applied
per mode and anomalies, and from kvsz.synced_tables each table with column
drift (a source column dropped or renamed under a target column kvsz filled,
or added without one) and whether it is stopped for it, with the fix, and
the kvsz process that claimed it (host, pid, shard; kvsz.owners). More
sources: the disconnected/erroring ones with their reason. An unreachable
source is reported, not fatal. Warns when a slot retains more WAL than
retainedWalWarnBytes.

Reads one connection per source server for the slots and walsenders of all
its sources, and each source's database ${SOURCE_CONCURRENCY} at a time.

Exit status: 0, or 2 for a bad config or a filter that matches nothing.

${CONFIG_HELP}
      --database NAME show only the sources of database NAME (repeatable)
      --source SID    show only the sources with sid SID (repeatable; with
                      --database, only in those databases)
      --shard I/N     show only the sources of shard I of N (kvsz run --shard)
      --json          print the report as JSON: {summary, sources (every
                      source shown), destination, warnings}`,
  options: {
    ...CONFIG_OPTION,
    json: { type: "boolean" },
    database: { type: "string", multiple: true },
    source: { type: "string", multiple: true },
    shard: { type: "string" },
  },
  async run(flags) {
    const config = await withDiscovered(
      (await expandAllTables(await findAndLoadConfig(flags.config as string | undefined))).config,
    );
    const filter = {
      databases: (flags.database as string[] | undefined) ?? [],
      sids: (flags.source as string[] | undefined) ?? [],
    };
    const shard = flags.shard === undefined ? undefined : shardOption(flags.shard as string);
    const filtered = filter.databases.length + filter.sids.length > 0 || shard !== undefined;
    const picked = filterSources(config, filter);
    const report = await collectStatus(shard ? configForShard(picked, shard) : picked);
    if (flags.json) printJson(report);
    else console.log(formatStatus(report, { detail: filtered }));
    return EXIT_OK;
  },
};
