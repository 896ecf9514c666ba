/** `kvsz status`: replication health of every source — slot, lag, WAL retained, progress. */
import { type Command, CONFIG_HELP, CONFIG_OPTION, EXIT_OK } from "./command.ts";
import { findAndLoadConfig } from "../config/load.ts";
import { collectStatus, type SourceStatus, type StatusReport } from "../observe/status_report.ts";
import { formatTable, printJson } from "./output.ts";
import { humanBytes, humanSeconds } from "../observe/human_units.ts";

/** Renders a status report as an aligned table plus detail and warning lines. */
export function formatStatus(report: StatusReport): string {
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
  const d = report.destination;
  lines.push(
    `destination ${d.endpoint}: ${
      !d.reachable
        ? `unreachable: ${d.error}`
        : d.error
        ? `cannot read kvsz.progress: ${d.error}`
        : d.progressTable
        ? "progress read from kvsz.progress"
        : "no kvsz.progress table yet (kvsz run has not started)"
    }`,
  );
  for (const w of report.warnings) lines.push(`WARN ${w}`);
  return lines.join("\n");
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
  summary: "show replication health: slots, lag, WAL retained, progress",
  help: `Usage: kvsz status [--config FILE] [--json]

For every configured source (in parallel): the kvsz replication slot (active,
bytes not yet confirmed, WAL retained, wal_status), its walsender, the tables
its publication sends, and from the destination's kvsz.progress the last
applied commit, how far behind it is, rows applied per mode and anomalies,
and from kvsz.synced_tables each table with column drift (a source column
dropped or renamed under a target column kvsz filled, or added without one)
and whether it is stopped for it, with the fix. An unreachable source is
reported, not fatal. Warns when a slot retains more WAL than
retainedWalWarnBytes.

Exit status: 0, or 2 for a bad config.

${CONFIG_HELP}
      --json          print the report as JSON`,
  options: { ...CONFIG_OPTION, json: { type: "boolean" } },
  async run(flags) {
    const config = await findAndLoadConfig(flags.config as string | undefined);
    const report = await collectStatus(config);
    if (flags.json) printJson(report);
    else console.log(formatStatus(report));
    return EXIT_OK;
  },
};
