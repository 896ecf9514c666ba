/**
 * `kvsz demo` end to end: two throwaway PostgreSQL servers, a small schema,
 * kvsz streaming in this process, a scripted series of source transactions
 * with live progress, the destination shown next to the source, and
 * everything stopped again (also on Ctrl-C or an error).
 */
import { relative } from "node:path";
import { parseConfig } from "../config/load.ts";
import type { Config } from "../config/types.ts";
import { connect, type Sql } from "../pg/connect.ts";
import { kvszObjectName } from "../pg/identifiers.ts";
import { freePort, type LocalCluster, startLocalCluster } from "../pg/local_cluster.ts";
import { formatLsn, parseLsn } from "../pg/lsn.ts";
import { configureLogging, registerSecrets } from "../log.ts";
import { installCrashGuards } from "../observe/crash_guard.ts";
import { Supervisor } from "../engine/supervisor.ts";
import { findDemoBinaries, NoServerBinariesError } from "./binaries.ts";
import {
  demoConfigYaml,
  type DemoTable,
  DEST_DB,
  SEED_SQL,
  SID,
  SOURCE_DB,
  STEPS,
  STORY_EMPLOYEE_ID,
  TABLES,
} from "./schema.ts";
import {
  blockWidth,
  duration,
  indent,
  shortTime,
  sideBySide,
  type Styles,
  styles,
  textTable,
} from "./render.ts";
import { describeError } from "../pg/describe.ts";
import { SyncBoard } from "../observe/sync_progress.ts";
import { passwordsOf } from "../pg/redact.ts";
import { KvszError } from "../errors.ts";

/** Options of {@link runDemo}. */
export interface DemoOptions {
  /** Leave both servers running at the end (the engine is stopped). */
  keep: boolean;
  /** PostgreSQL major version of the servers. */
  major: number;
  /** The user chose the major: do not fall back to another installed one. */
  majorExplicit: boolean;
}

/** Pause between two scripted source transactions. */
const STEP_PAUSE_MS = 300;
/** How long one source transaction may take to reach the destination. */
const APPLY_TIMEOUT_MS = 20_000;
/** How long kvsz may take from start to streaming (initial copy included). */
const START_TIMEOUT_MS = 60_000;

/** Runs the demo; returns the exit code (0 ok, 1 failure, 130 interrupted). */
export function runDemo(opts: DemoOptions): Promise<number> {
  return new Demo(opts).run();
}

/** The user pressed Ctrl-C (or the process got SIGTERM). */
class Interrupted extends KvszError {
  constructor(readonly signal: string) {
    super(`interrupted by ${signal}`);
  }
}

/** A failure the demo explains itself (timeouts, mismatches). */
class DemoFailure extends KvszError {}

const encoder = new TextEncoder();

interface ProgressRow {
  endLsn: bigint;
  rows: number;
  clone: number;
  append: number;
  history: number;
  anomalies: number;
}

class Demo {
  readonly #opts: DemoOptions;
  readonly #tty = Deno.stdout.isTerminal();
  readonly #s: Styles = styles(this.#tty);
  #stepNo = 0;
  #starting: Promise<LocalCluster>[] = [];
  #clusters: LocalCluster[] = [];
  #clients: Sql[] = [];
  /** Source and destination, once both run. */
  #servers: { source: LocalCluster; dest: LocalCluster } | undefined;
  #supervisor: Supervisor | undefined;
  #interrupt: (e: Interrupted) => void = () => {};
  readonly #interrupted: Promise<never>;
  #signals = 0;

  constructor(opts: DemoOptions) {
    this.#opts = opts;
    this.#interrupted = new Promise<never>((_, reject) => (this.#interrupt = reject));
    this.#interrupted.catch(() => {});
  }

  async run(): Promise<number> {
    const started = performance.now();
    configureLogging({ level: "warning", format: "text" });
    installCrashGuards();
    const onSignal = (signal: Deno.Signal) => () => this.#onSignal(signal);
    const handlers: [Deno.Signal, () => void][] = [
      ["SIGINT", onSignal("SIGINT")],
      ["SIGTERM", onSignal("SIGTERM")],
    ];
    for (const [sig, h] of handlers) Deno.addSignalListener(sig, h);
    let code = 0;
    let keep = false;
    try {
      this.#title();
      const ok = await this.#main();
      code = ok ? 0 : 1;
      keep = this.#opts.keep;
    } catch (e) {
      this.#endLine();
      if (e instanceof Interrupted) {
        this.#print("");
        this.#print(this.#s.yellow(`${e.signal}: stopping kvsz and both servers`));
        code = 130;
      } else if (e instanceof NoServerBinariesError) {
        console.error(`kvsz demo: ${e.message}`);
        code = 1;
      } else {
        console.error(this.#s.red(`kvsz demo failed: ${describeError(e)}`));
        code = 1;
      }
    }
    try {
      await this.#shutdown(keep, code === 0, started);
    } finally {
      for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);
    }
    return code;
  }

  /** The demo proper; false when a comparison did not match. */
  async #main(): Promise<boolean> {
    const [source, dest] = await this.#startServers();
    this.#servers = { source, dest };
    const src = this.#client(source.url(SOURCE_DB));
    const dst = this.#client(dest.url(DEST_DB));
    await this.#createSource(src);
    await this.#createDestination(dst);
    await this.#startKvsz(source, dest, dst);
    const last = await this.#playScript(src, dst);
    await this.#waitCaughtUp(dst, last);
    const ok = await this.#compare(src, dst);
    await this.#story(dst);
    return ok;
  }

  // ── steps ────────────────────────────────────────────────────────────────

  async #startServers(): Promise<[LocalCluster, LocalCluster]> {
    const { major, majorExplicit } = this.#opts;
    this.#step(`Start two throwaway PostgreSQL servers (local, on free ports, wal_level=logical)`);
    const bins = await this.#guard(findDemoBinaries(major, majorExplicit));
    if (bins.note) this.#detail(this.#s.yellow(bins.note));
    // The source commits synchronously so each change reaches kvsz at once.
    const start = (settings: Record<string, string>) =>
      startLocalCluster({ major: bins.major, binDir: bins.binDir, settings }).then((c) => {
        this.#clusters.push(c);
        return c;
      });
    this.#starting = [start({ synchronous_commit: "on" }), start({})];
    const [source, dest] = await this.#guard(Promise.all(this.#starting));
    for (const [cluster, db] of [[source, SOURCE_DB], [dest, DEST_DB]] as const) {
      const admin = connect(cluster.url());
      try {
        await admin.unsafe(`CREATE DATABASE ${db}`);
        const [v] = await admin.unsafe(`SHOW server_version`);
        const role = cluster === source ? "source     " : "destination";
        this.#detail(
          `${role}  PostgreSQL ${
            String(v.server_version).split(" ")[0]
          } on 127.0.0.1:${cluster.port}` +
            `, database ${db.padEnd(9)}  data in ${cluster.dir}`,
        );
      } finally {
        await admin.end({ timeout: 2 });
      }
    }
    return [source, dest];
  }

  async #createSource(src: Sql): Promise<void> {
    this.#step(`Create the source tables in ${SOURCE_DB}, with a few first rows`);
    await this.#guard(src.begin(async (tx) => {
      for (const t of TABLES) await tx.unsafe(t.sourceDdl);
      for (const q of SEED_SQL) await tx.unsafe(q);
    }));
    const width = Math.max(...TABLES.map((t) => t.name.length));
    for (const t of TABLES) {
      const [{ n }] = await src.unsafe(`SELECT count(*)::int AS n FROM ${t.name}`);
      this.#detail(`${t.name.padEnd(width)}  ${n} rows   mapped as ${t.mode}`);
    }
  }

  async #createDestination(dst: Sql): Promise<void> {
    this.#step(`Create the destination tables in ${DEST_DB} (you create them; kvsz fills them)`);
    await this.#guard(dst.begin(async (tx) => {
      for (const t of TABLES) await tx.unsafe(t.destDdl);
    }));
    const cols = await dst.unsafe(
      `SELECT table_name AS t, string_agg(column_name, ', ' ORDER BY ordinal_position) AS c
         FROM information_schema.columns WHERE table_schema = 'public' GROUP BY 1`,
    );
    const width = Math.max(...TABLES.map((t) => t.name.length));
    for (const t of TABLES) {
      const c = cols.find((r) => r.t === t.name)?.c ?? "";
      this.#detail(`${t.name.padEnd(width)}  (${c})`);
    }
  }

  async #startKvsz(source: LocalCluster, dest: LocalCluster, dst: Sql): Promise<void> {
    this.#step(
      `Start kvsz in this process (1 source, ${TABLES.length} tables; only warnings are logged)`,
    );
    let listen = "";
    try {
      listen = `127.0.0.1:${freePort()}`;
    } catch { /* no free port: metrics stay off */ }
    const text = demoConfigYaml(source, dest, listen);
    const file = `${source.dir}/kvsz-demo.yaml`;
    await Deno.writeTextFile(file, text);
    const config = parseConfig(text, file, {});
    registerSecrets(
      [config.destination.url, ...config.databases.flatMap((d) => d.urls.map((u) => u.url))]
        .flatMap(passwordsOf),
    );
    // The demo runs the engine itself: no metrics endpoint while it shows its own progress.
    const engineConfig: Config = { ...config, metrics: { ...config.metrics, listen: "" } };
    let streaming: () => void = () => {};
    const isStreaming = new Promise<void>((resolve) => (streaming = resolve));
    const started = performance.now();
    const board = new SyncBoard();
    this.#supervisor = new Supervisor((database, sid) => ({
      onConnected: (connected) => {
        if (connected) streaming();
      },
      syncProgress: () => board.source({ database, sid }),
    }));
    await this.#supervisor.apply(engineConfig);
    await this.#guard(withTimeout(
      isStreaming,
      START_TIMEOUT_MS,
      `kvsz did not start streaming within ${START_TIMEOUT_MS / 1000} s (the errors above say why)`,
    ));
    const synced = await dst.unsafe(
      `SELECT source_table AS t, rows FROM kvsz.synced_tables ORDER BY synced_at, source_table`,
    );
    const name = kvszObjectName(SOURCE_DB, SID);
    this.#detail(`created publication and replication slot ${name} on the source`);
    this.#detail(
      `copied ${synced.map((r) => `${r.t} (${r.rows} rows)`).join(", ")} in the slot's snapshot`,
    );
    this.#detail(`streaming changes after ${duration(performance.now() - started)}`);
  }

  /** Plays the scripted transactions; returns the WAL insert LSN before and after the last commit. */
  async #playScript(src: Sql, dst: Sql): Promise<{ pre: bigint; post: bigint }> {
    this.#step(
      `Change the source: ${STEPS.length} transactions, ${STEP_PAUSE_MS} ms apart, ` +
        `and watch kvsz apply each one`,
    );
    this.#detail(
      this.#s.dim(
        `dest LSN: the last source commit kvsz.progress records; lag: from the source's commit ` +
          `to the destination's`,
      ),
    );
    const opWidth = Math.max(...STEPS.map((s) => s.op.length));
    const whatWidth = opWidth + 2 + Math.max(...STEPS.map((s) => s.what.length));
    const headers = [
      "#",
      "source transaction",
      "source LSN",
      "dest LSN",
      "lag",
      "rows applied",
    ];
    const widths = [2, whatWidth, 10, 10, 6, 12];
    const row = (cells: string[]) =>
      cells.map((c, i) => (i === 0 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ")
        .trimEnd();
    this.#detail(this.#s.dim(row(headers)));
    const last = { pre: 0n, post: 0n };
    for (const [i, step] of STEPS.entries()) {
      const label = `${step.op.padEnd(opWidth)}  ${step.what}`;
      let pre = 0n;
      await this.#guard(src.begin(async (tx) => {
        for (const q of step.sql) await tx.unsafe(q);
        pre = parseLsn((await tx.unsafe(`SELECT pg_current_wal_insert_lsn()::text AS l`))[0].l);
      }));
      const committed = performance.now();
      const [{ l }] = await src.unsafe(`SELECT pg_current_wal_insert_lsn()::text AS l`);
      const post = parseLsn(l);
      last.pre = pre;
      last.post = post;
      for (;;) {
        const p = await readProgressRow(dst);
        const applied = p !== null && p.endLsn > pre;
        const dest = p ? formatLsn(p.endLsn) : "-";
        const behind = p && p.endLsn < post ? Number(post - p.endLsn) : 0;
        if (applied) {
          const lag = duration(performance.now() - committed);
          this.#live(row([String(i + 1), label, formatLsn(post), dest, lag, String(p.rows)]), true);
          break;
        }
        if (performance.now() - committed > APPLY_TIMEOUT_MS) {
          throw new DemoFailure(
            `kvsz did not apply transaction ${i + 1} within ${APPLY_TIMEOUT_MS / 1000} s`,
          );
        }
        const lag = `${behind} B`;
        this.#live(
          row([String(i + 1), label, formatLsn(post), dest, lag, String(p?.rows ?? 0)]),
          false,
        );
        await this.#sleep(20);
      }
      if (i < STEPS.length - 1) await this.#sleep(STEP_PAUSE_MS);
    }
    return last;
  }

  async #waitCaughtUp(dst: Sql, last: { pre: bigint; post: bigint }): Promise<void> {
    this.#step(`Wait until the destination has caught up with the source`);
    const started = performance.now();
    for (;;) {
      const p = await readProgressRow(dst);
      if (p && p.endLsn > last.pre) {
        this.#detail(
          `caught up: the source's last transaction ends at ${formatLsn(last.post)}, ` +
            `kvsz.progress in the destination is at ${formatLsn(p.endLsn)}`,
        );
        this.#detail(
          `rows applied: history ${p.history}, clone ${p.clone}, append ${p.append}; ` +
            `anomalies: ${p.anomalies}`,
        );
        return;
      }
      if (performance.now() - started > APPLY_TIMEOUT_MS) {
        throw new DemoFailure(
          `the destination did not catch up within ${APPLY_TIMEOUT_MS / 1000} s`,
        );
      }
      await this.#sleep(20);
    }
  }

  /** Shows each table on both sides with a verdict; false when one does not match. */
  async #compare(src: Sql, dst: Sql): Promise<boolean> {
    this.#step(`Compare the destination with the source, table by table`);
    let ok = true;
    const columns = this.#tty ? Deno.consoleSize().columns : 200;
    for (const t of TABLES) {
      const s = (await src.unsafe(t.sourceQuery)).map(cells);
      const d = (await dst.unsafe(t.destQuery)).map(cells);
      const verdict = check(t, s, d);
      ok &&= verdict.ok;
      const left = [
        `source  ${SOURCE_DB}.public.${t.name}`,
        ...textTable(sourceHeaders(t), s.map(display(t, false))),
      ];
      const right = [
        `destination  ${DEST_DB}.public.${t.name}`,
        ...textTable(destHeaders(t), d.map(display(t, true))),
      ];
      this.#print("");
      this.#print(`    ${this.#s.bold(t.name)}  ${this.#s.dim(`mapped as ${t.note}`)}`);
      const together = sideBySide(left, right);
      if (4 + blockWidth(together) <= columns) {
        for (const l of indent(together)) this.#print(l);
      } else {
        for (const l of indent([...left, "", ...right])) this.#print(l);
      }
      this.#print(
        `    ${verdict.ok ? this.#s.green("✓") : this.#s.red("✗")} ${verdict.message}`,
      );
    }
    return ok;
  }

  /** John Doe's salary history, as in kuvasz-streamer's history example. */
  async #story(dst: Sql): Promise<void> {
    this.#step(`John Doe's salary history in the destination (kuvasz-streamer's history example)`);
    const versions = (await dst.unsafe(
      `SELECT sid, id, first_name, last_name, salary, kvsz_start::text, kvsz_end::text, kvsz_deleted
         FROM employees WHERE id = $1 ORDER BY kvsz_start`,
      [STORY_EMPLOYEE_ID],
    )).map(cells);
    const employees = TABLES.find((t) => t.name === "employees")!;
    this.#print("");
    for (
      const l of indent(textTable(destHeaders(employees), versions.map(display(employees, true))))
    ) {
      this.#print(l);
    }
    this.#print("");
    this.#detail(
      `An INSERT opens a version valid from 1900-01-01; each UPDATE closes it at the source ` +
        `commit's time`,
    );
    this.#detail(
      `and opens the next one; the DELETE closes the last one with kvsz_deleted = true.`,
    );
    // The salary at a moment inside each version, and now, asked the way a user would.
    const moments: { label: string; at: string }[] = versions.map((v) => {
      const start = v[5].startsWith("1900")
        ? Date.parse(pgTime(v[6])) - 500
        : Date.parse(pgTime(v[5]));
      const end = Date.parse(pgTime(v[6]));
      const at = new Date(Math.floor((start + end) / 2)).toISOString();
      return { label: shortTime(at), at };
    });
    moments.push({ label: "now", at: new Date().toISOString() });
    this.#print("");
    this.#detail(
      `His salary at a moment t:  SELECT salary FROM employees WHERE id = ${STORY_EMPLOYEE_ID} ` +
        `AND t >= kvsz_start AND t < kvsz_end`,
    );
    for (const m of moments) {
      const rows = await dst.unsafe(
        `SELECT salary FROM employees WHERE id = $1 AND $2::timestamptz >= kvsz_start
            AND $2::timestamptz < kvsz_end`,
        [STORY_EMPLOYEE_ID, m.at],
      );
      const answer = rows.length === 0 ? "no row: he has left" : String(rows[0].salary);
      this.#detail(`  t = ${m.label.padEnd(12)}  ->  ${answer}`);
    }
  }

  // ── shutdown ─────────────────────────────────────────────────────────────

  async #shutdown(keep: boolean, succeeded: boolean, started: number): Promise<void> {
    if (succeeded) {
      this.#step(
        keep
          ? `Stop kvsz; both servers keep running (--keep)`
          : `Stop kvsz, then both servers, and remove their data directories`,
      );
    }
    const t0 = performance.now();
    await this.#supervisor?.stop().catch(() => {});
    this.#supervisor = undefined;
    await Promise.all(this.#clients.splice(0).map((c) => c.end({ timeout: 2 }).catch(() => {})));
    await Promise.allSettled(this.#starting);
    if (keep && this.#servers) {
      this.#printKeep(this.#servers.source, this.#servers.dest);
      return;
    }
    await Promise.all(this.#clusters.map((c) => c.destroy()));
    this.#clusters = [];
    if (succeeded) {
      this.#detail(`stopped in ${duration(performance.now() - t0)}`);
      this.#print("");
      this.#print(
        `${this.#s.green("Done")} in ${duration(performance.now() - started)}. ` +
          `Next: \`${demoInvocation()} --keep\` keeps the servers to experiment with;`,
      );
      this.#print(`README.md shows how to point kvsz at your own databases.`);
    } else if (this.#starting.length > 0) {
      this.#print(
        this.#s.dim(`kvsz and both servers are stopped; their data directories are removed.`),
      );
    }
  }

  #printKeep(source: LocalCluster, dest: LocalCluster): void {
    const kvsz = kvszInvocation();
    const file = `${source.dir}/kvsz-demo.yaml`;
    this.#detail(
      `These are throwaway local servers with random passwords, so the URLs are shown in full:`,
    );
    this.#detail(`  source       ${source.url(SOURCE_DB)}`);
    this.#detail(`  destination  ${dest.url(DEST_DB)}`);
    this.#print("");
    this.#detail(`The config kvsz used, saved as ${file}:`);
    this.#print("");
    for (const l of Deno.readTextFileSync(file).trimEnd().split("\n")) this.#detail(`  ${l}`);
    this.#print("");
    this.#detail(`Keep experimenting: run kvsz on them`);
    this.#detail(`  ${kvsz} run --config ${file}   # resumes where the demo stopped`);
    this.#detail(`and in another terminal:`);
    this.#detail(
      `  psql '${source.url(SOURCE_DB)}' -c "UPDATE employees SET salary = 1600 WHERE id = 2"`,
    );
    this.#detail(
      `  psql '${dest.url(DEST_DB)}' -c "SELECT * FROM employees ORDER BY id, kvsz_start"`,
    );
    this.#detail(`  ${kvsz} status --config ${file}`);
    this.#print("");
    const asUser = source.runAs
      ? ` (they run as user ${source.runAs}, because the demo ran as root)`
      : "";
    this.#detail(`Stop the servers and remove their data when done${asUser}:`);
    for (const c of [source, dest]) this.#detail(`  ${stopCommand(c)}`);
  }

  #onSignal(signal: Deno.Signal): void {
    this.#signals++;
    if (this.#signals === 1) {
      this.#interrupt(new Interrupted(signal));
      return;
    }
    // A second signal: stop the servers at once and leave.
    this.#endLine();
    this.#print(this.#s.yellow(`${signal} again: stopping the servers at once`));
    for (const c of this.#clusters) forceStopSync(c);
    Deno.exit(130);
  }

  // ── output and waiting ───────────────────────────────────────────────────

  #title(): void {
    this.#print(
      this.#s.bold(`kvsz demo`) + ` — change data capture from one PostgreSQL into another`,
    );
    this.#print(
      this.#s.dim(
        `Everything runs on this machine and is removed at the end${
          this.#opts.keep ? " (except the servers: --keep)" : ""
        }. Ctrl-C stops it at any time.`,
      ),
    );
  }

  #step(text: string): void {
    this.#stepNo++;
    this.#print("");
    this.#print(this.#s.bold(`${String(this.#stepNo).padStart(2)}. ${text}`));
  }

  #detail(text: string): void {
    this.#print(`    ${text}`);
  }

  #print(line: string): void {
    this.#endLine();
    Deno.stdout.writeSync(encoder.encode(line + "\n"));
  }

  #liveOpen = false;

  /** A line that is rewritten in place on a terminal until `final`. */
  #live(line: string, final: boolean): void {
    if (final) {
      Deno.stdout.writeSync(encoder.encode(`${this.#tty ? "\r\x1b[K" : ""}    ${line}\n`));
      this.#liveOpen = false;
    } else if (this.#tty) {
      Deno.stdout.writeSync(encoder.encode(`\r\x1b[K    ${this.#s.yellow(line)}`));
      this.#liveOpen = true;
    }
  }

  #endLine(): void {
    if (this.#liveOpen) Deno.stdout.writeSync(encoder.encode("\n"));
    this.#liveOpen = false;
  }

  #client(url: string): Sql {
    const sql = connect(url, { max: 1 });
    this.#clients.push(sql);
    return sql;
  }

  /** `p`, or an {@link Interrupted} rejection as soon as a signal arrives. */
  #guard<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.#interrupted]);
  }

  #sleep(ms: number): Promise<void> {
    return this.#guard(new Promise((resolve) => setTimeout(resolve, ms)));
  }
}

// ── helpers ──────────────────────────────────────────────────────────────

async function readProgressRow(dst: Sql): Promise<ProgressRow | null> {
  const rows = await dst.unsafe(
    `SELECT end_lsn::text AS end_lsn, rows_clone::int AS c, rows_append::int AS a,
            rows_history::int AS h, anomalies::int AS x
       FROM kvsz.progress WHERE database = $1 AND sid = $2`,
    [SOURCE_DB, SID],
  );
  if (rows.length === 0) return null;
  const r = rows[0];
  return {
    endLsn: parseLsn(r.end_lsn),
    clone: r.c,
    append: r.a,
    history: r.h,
    anomalies: r.x,
    rows: r.c + r.a + r.h,
  };
}

/** A result row as text cells, in column order. */
function cells(row: Record<string, unknown>): string[] {
  return Object.values(row).map((v) => (v === null ? "" : String(v)));
}

function sourceHeaders(t: DemoTable): string[] {
  return columnNames(t.sourceQuery);
}

function destHeaders(t: DemoTable): string[] {
  return columnNames(t.destQuery);
}

function columnNames(query: string): string[] {
  const list = /^SELECT\s+([\s\S]*?)\s+FROM\s/i.exec(query)![1];
  return list.split(",").map((c) => c.trim().replace(/::\w+$/, ""));
}

/** Formats timestamp cells (columns `at`, `kvsz_start`, `kvsz_end`) for display. */
function display(t: DemoTable, dest: boolean): (row: string[]) => string[] {
  const names = dest ? destHeaders(t) : sourceHeaders(t);
  const times = new Set(
    names.flatMap((n, i) => (["at", "kvsz_start", "kvsz_end"].includes(n) ? [i] : [])),
  );
  return (row) => row.map((v, i) => (times.has(i) ? shortTime(v) : v));
}

/** Whether the destination rows are what the table's mode promises. */
function check(t: DemoTable, s: string[][], d: string[][]): { ok: boolean; message: string } {
  const key = (r: string[]) => JSON.stringify(r);
  const same = (a: string[][], b: string[][]) =>
    JSON.stringify(a.map(key).sort()) === JSON.stringify(b.map(key).sort());
  if (t.mode === "history") {
    // sid, id, first_name, last_name, salary, kvsz_start, kvsz_end, kvsz_deleted
    const current = d.filter((r) => r[6].startsWith("9999-01-01") && r[7] === "false")
      .map((r) => r.slice(1, 5));
    const story = d.filter((r) => r[1] === String(STORY_EMPLOYEE_ID));
    const storyOk = story.map((r) => r[4]).join(",") === "1000,1200,2000" &&
      story.map((r) => r[7]).join(",") === "false,false,true";
    const ok = same(current, s) && storyOk;
    return {
      ok,
      message: ok
        ? `the current versions equal the source; John Doe's ${story.length} versions are kept, ` +
          `the last one deleted`
        : `the destination's versions do not match the source (current versions: ${current.length}, ` +
          `John Doe's salaries: ${story.map((r) => r[4]).join(" -> ") || "none"})`,
    };
  }
  if (t.mode === "clone") {
    const ok = d.every((r) => r[0] === SID) && same(d.map((r) => r.slice(1)), s);
    return {
      ok,
      message: ok
        ? `identical to the source, with sid = ${SID}`
        : `the destination differs from the source`,
    };
  }
  const dKeys = new Set(d.map(key));
  const missing = s.filter((r) => !dKeys.has(key(r)));
  const kept = d.length - s.length;
  const rows = s.length === 1 ? "row is" : "rows are";
  const ok = missing.length === 0 && kept > 0;
  return {
    ok,
    message: ok
      ? `the source's ${s.length} ${rows} here, and the ${kept} rows the TRUNCATE removed ` +
        `from the source are kept`
      : `${missing.length} source row(s) missing in the destination`,
  };
}

/** Server text `2025-01-02 14:03:05.123456+00` as an ISO string JS parses. */
function pgTime(text: string): string {
  return text.replace(" ", "T").replace(/([+-]\d\d)$/, "$1:00");
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DemoFailure(message)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** How the user runs kvsz: `deno task kvsz` from the checkout, or the binary's name or path. */
function kvszInvocation(): string {
  const exe = Deno.execPath();
  if (/(^|\/)deno(\.exe)?$/.test(exe) && Deno.mainModule.startsWith("file:")) {
    const main = new URL(Deno.mainModule).pathname;
    const cwd = Deno.cwd();
    let hasTask = false;
    try {
      hasTask = Deno.readTextFileSync(`${cwd}/deno.json`).includes(`"kvsz"`);
    } catch { /* no deno.json here */ }
    if (hasTask && main === `${cwd}/main.ts`) return "deno task kvsz";
    return `deno run -A ${relative(cwd, main)}`;
  }
  const name = exe.slice(exe.lastIndexOf("/") + 1);
  const onPath = (Deno.env.get("PATH") ?? "").split(":").some((d) => `${d}/${name}` === exe);
  return onPath ? name : exe;
}

/** How the user runs the demo (`deno task demo` from the checkout). */
function demoInvocation(): string {
  const kvsz = kvszInvocation();
  return kvsz === "deno task kvsz" ? "deno task demo" : `${kvsz} demo`;
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/** A shell command that stops `c` and removes its directory. */
function stopCommand(c: LocalCluster): string {
  const pgCtl = `${shellQuote(`${c.binDir}/pg_ctl`)} -D ${shellQuote(`${c.dir}/data`)} stop`;
  const stop = c.runAs ? `runuser -u ${c.runAs} -- ${pgCtl}` : pgCtl;
  return `${stop} && rm -rf ${shellQuote(c.dir)}`;
}

/** Stops `c` immediately and removes its directory, synchronously (for a second Ctrl-C). */
function forceStopSync(c: LocalCluster): void {
  const args = ["-D", `${c.dir}/data`, "stop", "-m", "immediate", "-w"];
  const pgCtl = `${c.binDir}/pg_ctl`;
  const [program, argv] = c.runAs
    ? ["runuser", ["-u", c.runAs, "--", pgCtl, ...args]]
    : [pgCtl, args];
  try {
    new Deno.Command(program, { args: argv, stdout: "null", stderr: "null" }).outputSync();
  } catch { /* already stopped */ }
  try {
    Deno.removeSync(c.dir, { recursive: true });
  } catch { /* already gone */ }
}
