/**
 * `deno task bench`: kvsz against PostgreSQL's native logical replication on
 * the same two throwaway servers, in the same run. See bench/README.md.
 */
import { parseArgs } from "node:util";
import { cleanupAll, installSignalHandlers } from "./cleanup.ts";
import { type BenchContext, type BenchOptions, type Scenario, SCENARIOS } from "./context.ts";
import { findPgbench, pgbenchVersion, startServers } from "./servers.ts";
import { machineInfo, markdownTable, Recorder } from "./report.ts";
import { elapsedSeconds, say } from "./util.ts";
import { latencyRate, mainRound, setupMainSource } from "./scenarios/round.ts";
import { fanInRound, setupFanIn } from "./scenarios/fan_in.ts";
import { tenantsScenario } from "./scenarios/tenants.ts";
import { upgradeScenario } from "./scenarios/upgrade.ts";

const USAGE = `Usage: deno task bench [options]

  --scenarios LIST        comma-separated, default all: ${SCENARIOS.join(",")}
  --rounds N              rounds per scenario, engines alternating (default 3)
  --scale N               pgbench scale of the source, 100,000 accounts each (default 10)
  --transactions N        tpcb-like backlog for stream-small and history (default 50000)
  --live-transactions N   load while the engine runs, stream-live (default 20000)
  --clients N             pgbench clients (default 4)
  --large-rows N          rows of the stream-large transaction (default 1000000)
  --fan-in-sources N      source databases of fan-in (default 8)
  --fan-in-transactions N backlog over all fan-in sources (default: --transactions)
  --fan-in-scale N        pgbench scale of each fan-in source (default 1)
  --tenants N             tenant databases of the tenants scenario (default 200; --quick: 20)
  --tenant-rows N         accounts per tenant (default 1000)
  --tenant-backlog N      changed rows of the tenants backlog, all tenants (default 100000)
  --tenant-rate N         changed rows/s of the tenants steady load, all tenants (default 2000)
  --tenant-load-seconds N duration of the tenants steady load (default 15)
  --tenant-idle-seconds N kvsz watched idle for its CPU (default 60)
  --tenant-timeout N      seconds to get every tenant copied and streaming (default 120 + 1 per tenant)
  --native-max-tenants N  above this many tenants, tenants runs kvsz alone (default 300)
  --tenant-cpus X         split (default): source server and load on half the CPUs, destination
                          server and engine on the other half, as on two machines; shared: no pinning
  --upgrade-scale N       pgbench scale of the upgrade scenario's PostgreSQL 12 source (default 10; --quick: 2)
  --upgrade-rate N        transactions/s of the upgrade scenario's live client (default 500)
  --latency-seconds N     duration of the steady load (default 15)
  --latency-rate N        pgbench --rate of the latency load (default: half of the measured max)
  --native-streaming X    subscription streaming option: off (default), on, parallel
  --batch-size N          kvsz apply.batch_size (default: kvsz's default)
  --commit-interval-ms N  kvsz apply.commit_interval_ms (default: kvsz's default)
  --apply-workers N       kvsz apply.workers (default: kvsz's default)
  --cpu-prof DIR          profile every kvsz start with deno --cpu-prof into DIR
  --keep                  keep the work directory (kvsz configs and kvsz.log) after success
  --quick                 small sizes for a smoke run (scale 2, 10000 transactions, 1 round)
  --json FILE             result file (default bench/results/latest.json)
  --pg-major N            PostgreSQL major of both servers (default 17)
`;

function parseOptions(): BenchOptions {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      scenarios: { type: "string" },
      rounds: { type: "string" },
      scale: { type: "string" },
      transactions: { type: "string" },
      "live-transactions": { type: "string" },
      clients: { type: "string" },
      "large-rows": { type: "string" },
      "fan-in-sources": { type: "string" },
      "fan-in-transactions": { type: "string" },
      "fan-in-scale": { type: "string" },
      tenants: { type: "string" },
      "tenant-rows": { type: "string" },
      "tenant-backlog": { type: "string" },
      "tenant-rate": { type: "string" },
      "tenant-load-seconds": { type: "string" },
      "tenant-idle-seconds": { type: "string" },
      "tenant-timeout": { type: "string" },
      "native-max-tenants": { type: "string" },
      "tenant-cpus": { type: "string" },
      "apply-workers": { type: "string" },
      "upgrade-scale": { type: "string" },
      "upgrade-rate": { type: "string" },
      "latency-seconds": { type: "string" },
      "latency-rate": { type: "string" },
      "native-streaming": { type: "string" },
      "batch-size": { type: "string" },
      "commit-interval-ms": { type: "string" },
      "cpu-prof": { type: "string" },
      quick: { type: "boolean" },
      keep: { type: "boolean" },
      json: { type: "string" },
      "pg-major": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const quick = values.quick ?? false;
  const int = (name: keyof typeof values, fallback: number): number => {
    const raw = values[name];
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0) {
      console.error(`--${name}: expected a whole number, got ${JSON.stringify(raw)}\n\n${USAGE}`);
      Deno.exit(2);
    }
    return n;
  };
  const scenarios = new Set<Scenario>();
  for (const s of (values.scenarios ?? SCENARIOS.join(",")).split(",").map((x) => x.trim())) {
    if (!s) continue;
    if (!SCENARIOS.includes(s as Scenario)) {
      console.error(`--scenarios: unknown scenario ${JSON.stringify(s)}\n\n${USAGE}`);
      Deno.exit(2);
    }
    scenarios.add(s as Scenario);
  }
  const streaming = values["native-streaming"] ?? "off";
  if (!["off", "on", "parallel"].includes(streaming)) {
    console.error(`--native-streaming: off, on or parallel\n\n${USAGE}`);
    Deno.exit(2);
  }
  const tenantCpus = values["tenant-cpus"] ?? "split";
  if (!["split", "shared"].includes(tenantCpus)) {
    console.error(`--tenant-cpus: split or shared\n\n${USAGE}`);
    Deno.exit(2);
  }
  const transactions = int("transactions", quick ? 10_000 : 50_000);
  const apply: Record<string, number> = {};
  if (values["batch-size"] !== undefined) apply.batch_size = int("batch-size", 0);
  if (values["commit-interval-ms"] !== undefined) {
    apply.commit_interval_ms = int("commit-interval-ms", 0);
  }
  if (values["apply-workers"] !== undefined) apply.workers = int("apply-workers", 0);
  return {
    scenarios,
    rounds: Math.max(1, int("rounds", quick ? 1 : 3)),
    scale: Math.max(1, int("scale", quick ? 2 : 10)),
    transactions,
    liveTransactions: int("live-transactions", quick ? 5_000 : 20_000),
    clients: Math.max(1, int("clients", 4)),
    largeRows: int("large-rows", quick ? 200_000 : 1_000_000),
    fanInSources: Math.max(1, int("fan-in-sources", 8)),
    fanInTransactions: int("fan-in-transactions", transactions),
    fanInScale: Math.max(1, int("fan-in-scale", 1)),
    latencySeconds: Math.max(1, int("latency-seconds", quick ? 5 : 15)),
    tenants: {
      count: Math.max(1, int("tenants", quick ? 20 : 200)),
      rows: Math.max(3, int("tenant-rows", 1000)),
      backlogChanges: int("tenant-backlog", quick ? 20_000 : 100_000),
      changesPerSecond: Math.max(4, int("tenant-rate", 2000)),
      loadSeconds: Math.max(1, int("tenant-load-seconds", quick ? 5 : 15)),
      idleSeconds: Math.max(1, int("tenant-idle-seconds", quick ? 5 : 60)),
      timeoutSeconds: int("tenant-timeout", 0),
      nativeMax: int("native-max-tenants", 300),
      splitCpus: tenantCpus === "split",
    },
    latencyRate: int("latency-rate", 0),
    upgradeScale: Math.max(1, int("upgrade-scale", quick ? 2 : 10)),
    upgradeRate: Math.max(1, int("upgrade-rate", 500)),
    nativeStreaming: streaming,
    apply,
    cpuProfDir: values["cpu-prof"],
    keep: values.keep ?? false,
    json: values.json ?? new URL("./results/latest.json", import.meta.url).pathname,
    major: int("pg-major", 17),
  };
}

/** The commit kvsz ran from, with "+dirty" when lib/ or main.ts have uncommitted changes. */
async function kvszRevision(): Promise<string> {
  const root = new URL("..", import.meta.url).pathname;
  const git = async (args: string[]) => {
    const out = await new Deno.Command("git", { args, cwd: root, stdout: "piped", stderr: "null" })
      .output().catch(() => null);
    return out?.success ? new TextDecoder().decode(out.stdout).trim() : null;
  };
  const head = await git(["rev-parse", "--short", "HEAD"]);
  if (!head) return "unknown";
  const dirty = await git(["status", "--porcelain", "--", "lib", "main.ts"]);
  return dirty ? `${head}+dirty` : head;
}

async function main(): Promise<number> {
  const opts = parseOptions();
  installSignalHandlers();
  const rec = new Recorder();
  const workDir = await Deno.makeTempDir({ prefix: "kvsz-bench-" });
  const kvszLog = `${workDir}/kvsz.log`;
  if (opts.cpuProfDir) await Deno.mkdir(opts.cpuProfDir, { recursive: true });
  say(
    `kvsz benchmark: ${
      [...opts.scenarios].join(", ")
    }; ${opts.rounds} round(s); work dir ${workDir}`,
  );
  try {
    const pgbench = await findPgbench();
    const pgbenchV = await pgbenchVersion(pgbench);
    say(`pgbench: ${pgbench} (${pgbenchV})`);
    const revision = await kvszRevision();
    say(`kvsz: ${revision}`);
    const { source, dest } = await startServers(opts.major);
    const ctx: BenchContext = { opts, source, dest, pgbench, workDir, rec, kvszLog };
    const main = [
      "initial",
      "stream-small",
      "stream-small-tls",
      "stream-live",
      "stream-large",
      "history",
      "transform",
      "latency",
    ].some((s) => opts.scenarios.has(s as Scenario));
    if (opts.scenarios.has("stream-small-tls")) await source.enableTls();
    let sourceRows = 0;
    let rate = 0;
    if (main) {
      sourceRows = await setupMainSource(ctx);
      say(`setup: source has ${sourceRows.toLocaleString("en-US")} rows in the pgbench tables`);
      if (opts.scenarios.has("latency")) rate = await latencyRate(ctx);
    }
    if (opts.scenarios.has("fan-in")) await setupFanIn(ctx);
    describeScenarios(ctx, sourceRows, rate);
    for (let round = 1; round <= opts.rounds; round++) {
      if (main) await mainRound(ctx, round, sourceRows, rate);
      if (opts.scenarios.has("fan-in")) await fanInRound(ctx, round);
    }
    if (opts.scenarios.has("tenants")) await tenantsScenario(ctx);
    if (opts.scenarios.has("upgrade")) await upgradeScenario(ctx);
    const table = markdownTable(rec);
    const seconds = elapsedSeconds();
    const result = {
      date: new Date().toISOString(),
      duration_seconds: Math.round(seconds),
      machine: await machineInfo(),
      kvsz_revision: revision,
      postgres_major: opts.major,
      pgbench: pgbenchV,
      options: { ...opts, scenarios: [...opts.scenarios] },
      titles: rec.titles,
      notes: rec.mergedNotes(),
      targets: rec.targets,
      kvsz_restarts_after_hang: rec.incidents,
      headlines: rec.headlines(),
      summary: rec.summary(),
      raw: rec.raw,
    };
    await Deno.mkdir(new URL(".", `file://${opts.json}`).pathname, { recursive: true });
    await Deno.writeTextFile(opts.json, JSON.stringify(result, null, 2) + "\n");
    console.log(`\nkvsz ${revision}, PostgreSQL ${opts.major}, ${pgbenchV}\n\n${table}\n`);
    for (const h of rec.headlines()) console.log(h);
    if (rec.targets.length) console.log(`\n${rec.targets.join("\n")}`);
    if (rec.hasFloor() || rec.targets.length) console.log("");
    for (const n of rec.mergedNotes()) console.log(`- ${n}`);
    if (opts.keep) say(`kept ${workDir} (kvsz configs, kvsz.log)`);
    else await Deno.remove(workDir, { recursive: true }).catch(() => {});
    console.log(
      `\nBenchmark took ${Math.floor(seconds / 60)} min ${
        Math.round(seconds % 60)
      } s; result in ${opts.json}`,
    );
    return 0;
  } catch (e) {
    say(`benchmark failed: ${(e as Error).stack ?? e}`);
    say(`kvsz logs: ${kvszLog}`);
    return 1;
  } finally {
    await cleanupAll();
  }
}

function describeScenarios(ctx: BenchContext, sourceRows: number, rate: number): void {
  const o = ctx.opts;
  const n = (x: number) => x.toLocaleString("en-US");
  const t = ctx.rec.titles;
  t["initial"] = `initial (scale ${o.scale}, ${n(sourceRows)} rows)`;
  t["stream-small"] = `stream-small catch-up (${n(o.transactions)} txns, ${
    n(o.transactions * 4)
  } changes)`;
  t["stream-small-tls"] = `stream-small over TLS (sslmode=require, the same backlog)`;
  t["stream-live"] = `stream-live (${n(o.liveTransactions)} txns, ${o.clients} clients)`;
  t["stream-large"] = `stream-large (1 txn, ${n(o.largeRows)} rows)`;
  t["history"] = `history catch-up (${n(o.transactions)} txns)`;
  t["transform"] = `filter + 2 set on pgbench_accounts (copy, then stream-small's backlog)`;
  t["fan-in"] = `fan-in (${o.fanInSources} sources, ${n(o.fanInTransactions)} txns)`;
  t["latency"] = `latency (${Math.round(rate)} tps, ${o.latencySeconds} s)`;
  ctx.rec.notes.push(
    `native subscription: streaming = ${o.nativeStreaming}, copy_data = true; kvsz apply: ${
      Object.keys(o.apply).length ? JSON.stringify(o.apply) : "defaults"
    }`,
  );
}

Deno.exit(await main());
