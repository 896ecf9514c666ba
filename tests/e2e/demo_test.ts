/**
 * `kvsz demo` end to end, as a user runs it: exit 0, both sides printed next
 * to each other with the values each mode promises (John Doe's three salary
 * versions, the audit log kept after TRUNCATE, orders equal), and no server
 * left behind; with `--keep`, the printed URLs, config and stop commands work.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { runCli } from "../support/run_cli.ts";
import { testVersions } from "../support/cluster.ts";
import { loadConfig } from "../../lib/config/load.ts";
import { exists } from "../../lib/fs.ts";

const MAJOR = testVersions()[0];

/** One side-by-side table of the comparison step: cells of the source and destination rows. */
interface Shown {
  source: string[][];
  dest: string[][];
  verdict: string;
}

/** Reads the side-by-side table printed for `table` (header, rule, rows, then the verdict). */
function shownTable(output: string, table: string): Shown {
  const lines = output.split("\n");
  const start = lines.findIndex((l) => l.trim().startsWith(`${table}  mapped as`));
  assert.ok(start >= 0, `no comparison for ${table} in:\n${output}`);
  const body: string[] = [];
  let i = start + 1;
  for (; i < lines.length && lines[i].includes("│"); i++) body.push(lines[i]);
  const verdict = lines[i]?.trim() ?? "";
  // body: title line, header, rule, rows
  const split = (cellsText: string) =>
    cellsText.trim() === "" ? [] : cellsText.trim().split(/\s{2,}/);
  const rows = body.slice(3).map((l) => l.split("│").map(split));
  return {
    source: rows.map((r) => r[0]).filter((r) => r.length > 0),
    dest: rows.map((r) => r[1]).filter((r) => r.length > 0),
    verdict,
  };
}

/** The rows printed under the "John Doe's salary history" step. */
function storyRows(output: string): string[][] {
  const lines = output.split("\n");
  const start = lines.findIndex((l) => /^\s*\d+\. John Doe's salary history/.test(l));
  assert.ok(start >= 0, `no salary history in:\n${output}`);
  const rows: string[][] = [];
  for (const l of lines.slice(start + 1)) {
    if (/^\s+\d+\s+\d+\s+John\s+Doe\s/.test(l)) rows.push(l.trim().split(/\s{2,}/));
    if (/^\s*\d+\. /.test(l)) break;
  }
  return rows;
}

/** Data directories and ports of the servers the demo printed in its first step. */
function servers(output: string): { dirs: string[]; ports: number[] } {
  const dirs = [...output.matchAll(/data in (\S+)/g)].map((m) => m[1]);
  const ports = [...output.matchAll(/on 127\.0\.0\.1:(\d+), database/g)].map((m) => Number(m[1]));
  assert.equal(dirs.length, 2, `two data directories expected in:\n${output}`);
  assert.equal(ports.length, 2, `two ports expected in:\n${output}`);
  return { dirs, ports };
}

async function accepts(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

async function assertGone(dirs: string[], ports: number[]): Promise<void> {
  for (const dir of dirs) assert.equal(await exists(dir), false, `${dir} was left behind`);
  for (const port of ports) {
    assert.equal(await accepts(port), false, `a server still listens on ${port}`);
  }
}

/** Last resort when a kept server could not be stopped by the printed command. */
async function killServer(dir: string): Promise<void> {
  try {
    const pid = Number((await Deno.readTextFile(`${dir}/data/postmaster.pid`)).split("\n")[0]);
    if (pid > 0) Deno.kill(pid, "SIGQUIT");
    await new Promise((r) => setTimeout(r, 500));
  } catch { /* not running */ }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}

Deno.test({
  name:
    `kvsz demo: runs end to end, shows both sides, leaves nothing running [PostgreSQL ${MAJOR}]`,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const r = await runCli(["demo", "--pg-major", String(MAJOR)], { timeoutMs: 120_000 });
    const { dirs, ports } = servers(r.output);
    try {
      assert.equal(r.code, 0, r.output);
      assert.match(r.stdout, /^kvsz demo/);
      for (let n = 1; n <= 9; n++) assert.match(r.stdout, new RegExp(`^ ?${n}\\. `, "m"));

      const employees = shownTable(r.stdout, "employees");
      assert.deepEqual(employees.source, [
        ["2", "Jane", "Smith", "1500"],
        ["3", "Ada", "Lovelace", "1800"],
      ]);
      const john = employees.dest.filter((row) => row[1] === "1");
      assert.deepEqual(john.map((row) => [row[2], row[3], row[4], row[7]]), [
        ["John", "Doe", "1000", "false"],
        ["John", "Doe", "1200", "false"],
        ["John", "Doe", "2000", "true"],
      ]);
      assert.equal(john[0][5], "1900-01-01");
      assert.equal(
        john[1][5],
        john[0][6],
        "a raise closes the version at the time the next starts",
      );
      assert.equal(john[2][5], john[1][6]);
      assert.notEqual(john[2][6], "9999-01-01", "the deleted version is closed");
      const current = employees.dest.filter((row) => row[6] === "9999-01-01" && row[7] === "false");
      assert.deepEqual(current.map((row) => row.slice(1, 5)), employees.source);
      assert.match(employees.verdict, /^✓/);

      const orders = shownTable(r.stdout, "orders");
      assert.equal(orders.source.length, 3);
      assert.deepEqual(orders.dest.map((row) => row.slice(1)), orders.source);
      assert.ok(orders.dest.every((row) => row[0] === "1"), "sid 1 on every order");
      assert.deepEqual(orders.source.find((row) => row[0] === "1"), [
        "1",
        "Jane Smith",
        "25.00",
        "shipped",
      ]);
      assert.match(orders.verdict, /^✓/);

      const audit = shownTable(r.stdout, "audit_log");
      assert.deepEqual(audit.source.map((row) => row[2]), ["audit log rotated"]);
      assert.equal(audit.dest.length, 10, "append keeps the rows TRUNCATE removed");
      const events = audit.dest.map((row) => row[2]);
      for (const e of ["app installed", "John Doe hired", "John Doe left", "audit log rotated"]) {
        assert.ok(events.includes(e), `${e} kept in the destination`);
      }
      assert.match(audit.verdict, /^✓/);

      const story = storyRows(r.stdout);
      assert.deepEqual(story.map((row) => [row[4], row[7]]), [
        ["1000", "false"],
        ["1200", "false"],
        ["2000", "true"],
      ]);
      assert.match(r.stdout, /t = now\s+->\s+no row/);
      assert.doesNotMatch(r.output, /✗/);
      assert.doesNotMatch(r.output, /pw[0-9a-f]{16}/, "no password without --keep");
      assert.match(r.stdout, /Done in/);
    } finally {
      for (const dir of dirs) if (await exists(dir)) await killServer(dir);
    }
    await assertGone(dirs, ports);
  },
});

Deno.test({
  name: `kvsz demo --keep: servers stay up with the printed URLs, config and stop commands`,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const r = await runCli(["demo", "--keep", "--pg-major", String(MAJOR)], {
      timeoutMs: 120_000,
    });
    const { dirs, ports } = servers(r.output);
    try {
      assert.equal(r.code, 0, r.output);
      const sourceUrl = /^\s+source\s+(postgres:\/\/\S+)$/m.exec(r.stdout)?.[1];
      const destUrl = /^\s+destination\s+(postgres:\/\/\S+)$/m.exec(r.stdout)?.[1];
      assert.ok(sourceUrl && destUrl, `URLs printed:\n${r.stdout}`);
      const configFile = /saved as (\S+):$/m.exec(r.stdout)?.[1];
      assert.ok(configFile, "config file printed");
      const config = await loadConfig(configFile, {});
      assert.equal(config.destination.url, destUrl);
      assert.equal(config.databases[0].urls[0].url, sourceUrl);
      assert.deepEqual(
        config.databases[0].tables.map((t) => [t.source, t.mode]),
        [["employees", "history"], ["orders", "clone"], ["audit_log", "append"]],
      );
      assert.match(r.stdout, /^\s+destination:\n\s+url: postgres:\/\//m, "YAML printed");

      const src = postgres(sourceUrl, { max: 1, onnotice: () => {} });
      const dst = postgres(destUrl, { max: 1, onnotice: () => {} });
      try {
        const john = await dst.unsafe(
          `SELECT salary, kvsz_deleted FROM employees WHERE id = 1 ORDER BY kvsz_start`,
        );
        assert.deepEqual(john.map((x) => [x.salary, x.kvsz_deleted]), [
          [1000, false],
          [1200, false],
          [2000, true],
        ]);
        const [{ n: auditRows }] = await dst.unsafe(`SELECT count(*)::int AS n FROM audit_log`);
        assert.equal(auditRows, 10);
        const orders = await src.unsafe(`SELECT id, status FROM orders ORDER BY id`);
        const copied = await dst.unsafe(`SELECT id, status FROM orders ORDER BY id`);
        assert.deepEqual(copied, orders);
        const slots = await src.unsafe(
          `SELECT slot_name, active FROM pg_replication_slots WHERE slot_name = 'kvsz_app_1'`,
        );
        assert.deepEqual(slots.map((s) => s.active), [false], "engine stopped, slot kept");
      } finally {
        await src.end({ timeout: 1 });
        await dst.end({ timeout: 1 });
      }
    } finally {
      // Stop the servers with the commands the demo printed.
      const commands = r.stdout.split("\n").filter((l) => l.includes("&& rm -rf")).map((l) =>
        l.trim()
      );
      const failed: string[] = [];
      for (const command of commands) {
        const out = await new Deno.Command("sh", { args: ["-c", command], stdout: "null" })
          .output();
        if (!out.success) failed.push(`${command}: ${new TextDecoder().decode(out.stderr)}`);
      }
      for (const dir of dirs) if (await exists(dir)) await killServer(dir);
      assert.equal(commands.length, 2, "a stop command per server");
      assert.deepEqual(failed, [], "the printed stop commands work");
    }
    await assertGone(dirs, ports);
  },
});
