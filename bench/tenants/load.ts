/**
 * The load of the `tenants` scenario, spread over every tenant: small
 * pgbench-like transactions (one tick row inserted and three accounts
 * updated: 4 changed rows), either at a steady rate from the benchmark
 * process or as a backlog written inside each tenant database (a DO block
 * committing each transaction). Each tick row's source commit time
 * (`pg_xact_commit_timestamp`) against its destination write time (`dst_ts`)
 * is that transaction's latency. A marker tick per tenant, with the source
 * WAL position just before its commit, tells when an engine has applied
 * everything before it.
 */
import type { Sql } from "../servers.ts";
import { quantile, sleep } from "../util.ts";
import { type Fleet, inBatches, type Tenant } from "./fleet.ts";

/** Changed rows per load transaction (1 tick inserted, 3 accounts updated). */
export const CHANGES_PER_TRANSACTION = 4;

/** A tenant's marker tick: its id, and an LSN before its commit (after every earlier one). */
export interface Marker {
  id: number;
  lsn: string;
}

/** Tick id → epoch seconds, per tenant database. */
export type TickTimes = Map<string, Map<number, number>>;

const LOAD_TRANSACTION = `WITH t AS (INSERT INTO ticks (phase) VALUES ($1))
  UPDATE accounts SET balance = balance + 1, updated_at = now() WHERE id IN ($2, $3, $4)`;

/** Three distinct account ids. */
function threeAccounts(rows: number): [number, number, number] {
  const a = 1 + Math.floor(Math.random() * (rows - 2));
  return [a, a + 1, a + 2];
}

/**
 * Runs load transactions at `changesPerSecond` in total for `seconds`, the
 * tenants in turn, each on its tenant's connection; resolves when every one
 * has committed, with the number of transactions and the achieved rate.
 */
export async function steadyLoad(
  fleet: Fleet,
  opts: { phase: number; changesPerSecond: number; seconds: number; rows: number },
): Promise<{ transactions: number; changesPerSecond: number }> {
  const { tenants, source } = fleet;
  const perSecond = opts.changesPerSecond / CHANGES_PER_TRANSACTION;
  const clients = tenants.map((t) => source.sql(t.database));
  await inBatches(clients, 8, async (sql) => void await sql.unsafe(`SELECT 1`)); // connected before
  const pending: Promise<unknown>[] = [];
  const started = performance.now();
  let issued = 0;
  for (;;) {
    const elapsed = (performance.now() - started) / 1000;
    if (elapsed >= opts.seconds) break;
    const due = Math.floor(elapsed * perSecond);
    for (; issued < due; issued++) {
      pending.push(
        clients[issued % tenants.length].unsafe(LOAD_TRANSACTION, [
          opts.phase,
          ...threeAccounts(opts.rows),
        ]),
      );
    }
    await sleep(5);
  }
  await Promise.all(pending);
  const seconds = (performance.now() - started) / 1000;
  return { transactions: issued, changesPerSecond: (issued * CHANGES_PER_TRANSACTION) / seconds };
}

/**
 * Writes `transactionsPerTenant` load transactions into every tenant (inside
 * the server: one DO block per tenant, a COMMIT per transaction, a few tenants
 * at a time). Returns the changed rows in total.
 */
export async function backlog(
  fleet: Fleet,
  opts: { phase: number; transactionsPerTenant: number; rows: number },
): Promise<number> {
  const block = `DO $$ BEGIN
      FOR i IN 1..${opts.transactionsPerTenant} LOOP
        INSERT INTO ticks (phase) VALUES (${opts.phase});
        UPDATE accounts SET balance = balance + 1, updated_at = now()
         WHERE id BETWEEN i % ${opts.rows - 2} + 1 AND i % ${opts.rows - 2} + 3;
        COMMIT;
      END LOOP;
    END $$`;
  await inBatches(fleet.tenants, 4, async (t) => {
    await fleet.source.sql(t.database).unsafe(block);
  });
  return fleet.tenants.length * opts.transactionsPerTenant * CHANGES_PER_TRANSACTION;
}

/** Inserts a marker tick into every tenant; returns them by tenant database. */
export async function insertMarkers(fleet: Fleet, phase: number): Promise<Map<string, Marker>> {
  const markers = new Map<string, Marker>();
  await inBatches(fleet.tenants, 8, async (t) => {
    const [r] = await fleet.source.sql(t.database).unsafe(
      `INSERT INTO ticks (phase) VALUES ($1) RETURNING id::int AS id, pg_current_wal_insert_lsn()::text AS lsn`,
      [phase],
    );
    markers.set(t.database, { id: r.id, lsn: r.lsn });
  });
  return markers;
}

/** Source commit times of the ticks of `phase`, per tenant. */
export async function sourceTickTimes(fleet: Fleet, phase: number): Promise<TickTimes> {
  const out: TickTimes = new Map();
  await inBatches(fleet.tenants, 8, async (t) => {
    out.set(t.database, await tickTimes(fleet.source.sql(t.database), phase, "source"));
  });
  return out;
}

/** Tick id → epoch seconds of `phase`: source commit time, or destination write time (`dst_ts`). */
export async function tickTimes(
  sql: Sql,
  phase: number,
  side: "source" | "destination",
): Promise<Map<number, number>> {
  const time = side === "source" ? "pg_xact_commit_timestamp(xmin)" : "dst_ts";
  const rows = await sql.unsafe(
    `SELECT id::int AS id, extract(epoch FROM ${time})::text AS t FROM ticks WHERE phase = $1`,
    [phase],
  );
  return new Map(rows.map((r) => [r.id as number, Number(r.t)]));
}

/** Latency of a steady load over every tenant, and the spread between tenants. */
export interface LatencyResult {
  ticks: number;
  /** Ticks committed on the source but not at the destination. */
  missing: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The median of the tenants' mean latencies, ms. */
  medianTenantMs: number;
  /** The slowest tenant's mean latency, ms, and which. */
  slowestTenantMs: number;
  slowestTenant: string;
}

/** Source commit → destination write of every tick, overall and per tenant. */
export function latency(tenants: Tenant[], source: TickTimes, dest: TickTimes): LatencyResult {
  const all: number[] = [];
  const means: { db: string; ms: number }[] = [];
  let missing = 0;
  for (const t of tenants) {
    const src = source.get(t.database) ?? new Map();
    const dst = dest.get(t.database) ?? new Map();
    let sum = 0;
    let n = 0;
    for (const [id, s] of src) {
      const d = dst.get(id);
      if (d === undefined) {
        missing++;
        continue;
      }
      const ms = (d - s) * 1000;
      all.push(ms);
      sum += ms;
      n++;
    }
    if (n) means.push({ db: t.database, ms: sum / n });
  }
  all.sort((a, b) => a - b);
  means.sort((a, b) => a.ms - b.ms);
  const slowest = means[means.length - 1];
  return {
    ticks: all.length,
    missing,
    p50Ms: quantile(all, 0.5),
    p99Ms: quantile(all, 0.99),
    maxMs: all[all.length - 1] ?? NaN,
    medianTenantMs: means.length ? quantile(means.map((m) => m.ms), 0.5) : NaN,
    slowestTenantMs: slowest?.ms ?? NaN,
    slowestTenant: slowest?.db ?? "–",
  };
}

/** When each tenant's marker was written at the destination (epoch seconds), from `dst_ts`. */
export function markerTimes(markers: Map<string, Marker>, dest: TickTimes): number[] {
  const out: number[] = [];
  for (const [db, m] of markers) {
    const t = dest.get(db)?.get(m.id);
    if (t !== undefined) out.push(t);
  }
  return out.sort((a, b) => a - b);
}

/**
 * Counts and sums of the tenant tables, comparable between source and
 * destination: one entry keyed "" for a tenant's own database, or one per sid
 * for kvsz's shared destination (`bySid`).
 */
export async function digests(sql: Sql, bySid = false): Promise<Map<string, string>> {
  const rows = bySid
    ? await sql.unsafe(
      `SELECT a.sid AS k, a.n || '/' || a.s AS a, coalesce(t.n, 0) || '/' || coalesce(t.m, 0) AS t
         FROM (SELECT sid, count(*) AS n, coalesce(sum(balance), 0) AS s FROM accounts GROUP BY sid) a
         LEFT JOIN (SELECT sid, count(*) AS n, max(id) AS m FROM ticks GROUP BY sid) t USING (sid)`,
    )
    : await sql.unsafe(
      `SELECT '' AS k,
              (SELECT count(*) || '/' || coalesce(sum(balance), 0) FROM accounts) AS a,
              (SELECT count(*) || '/' || coalesce(max(id), 0) FROM ticks) AS t`,
    );
  return new Map(rows.map((r) => [r.k as string, `accounts ${r.a}, ticks ${r.t}`]));
}

/** Source digests of every tenant, by tenant database. */
export async function sourceDigests(fleet: Fleet): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  await inBatches(fleet.tenants, 8, async (t) => {
    out.set(t.database, (await digests(fleet.source.sql(t.database))).get("")!);
  });
  return out;
}

/** Throws naming the first tenants whose destination differs from the source. */
export function compareDigests(
  what: string,
  source: Map<string, string>,
  dest: Map<string, string>,
): void {
  const differ = [...source].filter(([db, d]) => dest.get(db) !== d);
  if (differ.length === 0) return;
  const lines = differ.slice(0, 3).map(([db, d]) =>
    `  ${db}: source ${d}; destination ${dest.get(db) ?? "nothing"}`
  );
  throw new Error(
    `${what}: ${differ.length} of ${source.size} tenants differ between source and destination\n${
      lines.join("\n")
    }`,
  );
}
