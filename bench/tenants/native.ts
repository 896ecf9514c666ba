/**
 * Native logical replication in the `tenants` scenario, as a user would set
 * it up without kvsz: native maps a table only to the same schema-qualified
 * name, so each tenant gets a destination database of its own with one
 * subscription (`copy_data = true`) to the tenant's publication. Subscriptions
 * are created, disabled and enabled a few at a time, each in its database.
 */
import { parseLsn } from "../../lib/pg/lsn.ts";
import { processCpuSeconds, say, sleep, waitUntil } from "../util.ts";
import { destinationPids } from "./activity.ts";
import { NotStreamingError, type TenantEngine } from "./engine.ts";
import { type Fleet, inBatches, NATIVE_PUBLICATION, type Tenant } from "./fleet.ts";
import { digests, type Marker, type TickTimes, tickTimes } from "./load.ts";

/** Sessions opened at once on the destination (its max_connections is 100). */
const CONCURRENCY = 4;

/** One subscription per tenant, each in the tenant's own destination database. */
export class NativeTenants implements TenantEngine {
  readonly label = "native";
  #created = false;

  constructor(readonly fleet: Fleet, readonly streaming: string) {}

  async start(): Promise<void> {
    if (!this.#created) {
      this.#created = true;
      await this.#each((t) => {
        const conn = this.fleet.source.url(t.database).replaceAll("'", "''");
        return `CREATE SUBSCRIPTION ${t.database} CONNECTION '${conn}'
          PUBLICATION ${NATIVE_PUBLICATION} WITH (copy_data = true, streaming = ${this.streaming})`;
      });
    } else {
      await this.#each((t) => `ALTER SUBSCRIPTION ${t.database} ENABLE`);
    }
  }

  /** Runs one statement per tenant, each in the tenant's destination database. */
  async #each(statement: (t: Tenant) => string): Promise<void> {
    await inBatches(this.fleet.tenants, CONCURRENCY, async (t) => {
      await this.fleet.dest.withSession(t.database, (sql) => sql.unsafe(statement(t)));
    });
  }

  /**
   * Every tenant's tables in state `r` (`pg_subscription_rel`, one database
   * each). Checked only while no table-sync worker runs and every apply
   * worker is up (`pg_stat_subscription` shows every database's).
   */
  async waitAllStreaming(timeoutMs: number): Promise<void> {
    const started = performance.now();
    const pending = new Set(this.fleet.tenants.map((t) => t.database));
    while (pending.size > 0) {
      const waited = performance.now() - started;
      if (waited > timeoutMs) {
        throw new NotStreamingError(
          `native did not get every tenant copied and streaming in ${
            Math.round(waited / 1000)
          } s: ${this.fleet.tenants.length - pending.size} of ${this.fleet.tenants.length} ready`,
          this.fleet.tenants.length - pending.size,
          waited / 1000,
          [],
        );
      }
      const [w] = await this.fleet.dest.sql().unsafe(
        `SELECT count(*) FILTER (WHERE relid IS NOT NULL)::int AS syncing,
                count(DISTINCT subid) FILTER (WHERE relid IS NULL AND pid IS NOT NULL)::int AS applying
           FROM pg_stat_subscription`,
      );
      if (w.syncing === 0 && w.applying === this.fleet.tenants.length) {
        await inBatches([...pending], CONCURRENCY, async (db) => {
          const [r] = await this.fleet.dest.withSession(db, (sql) =>
            sql.unsafe(
              `SELECT count(*)::int AS n, count(*) FILTER (WHERE srsubstate <> 'r')::int AS pending
                 FROM pg_subscription_rel`,
            ));
          if (r.n > 0 && r.pending === 0) pending.delete(db);
        });
      }
      if (pending.size > 0) await sleep(200);
    }
  }

  async pause(): Promise<void> {
    await this.#each((t) => `ALTER SUBSCRIPTION ${t.database} DISABLE`);
    await waitUntil(async () => (await this.destPids()).length === 0, {
      what: "native: every worker gone after DISABLE",
      timeoutMs: 120_000,
    });
    await waitUntil(async () => {
      const [r] = await this.fleet.source.sql().unsafe(
        `SELECT count(*)::int AS n FROM pg_replication_slots WHERE active AND slot_name LIKE 'tenant\\_%'`,
      );
      return r.n === 0;
    }, { what: "native: every slot released", timeoutMs: 60_000 });
  }

  /**
   * Every subscription's replication origin (`pg_replication_origin_status`,
   * one view for the whole server) has applied a commit past its tenant's marker LSN.
   */
  async waitMarkers(markers: Map<string, Marker>, phase: number, timeoutMs: number) {
    await waitUntil(async () => {
      const rows = await this.fleet.dest.sql().unsafe(
        `SELECT d.datname AS db, o.remote_lsn::text AS lsn
           FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid
           LEFT JOIN pg_replication_origin_status o ON o.external_id = 'pg_' || s.oid`,
      );
      let done = 0;
      for (const r of rows) {
        const m = markers.get(r.db);
        if (m && r.lsn && parseLsn(r.lsn) >= parseLsn(m.lsn)) done++;
      }
      return done >= markers.size;
    }, { what: `native: the marker of every tenant (phase ${phase})`, timeoutMs, intervalMs: 100 });
  }

  async destTickTimes(phase: number): Promise<TickTimes> {
    const out: TickTimes = new Map();
    await inBatches(this.fleet.tenants, CONCURRENCY, async (t) => {
      out.set(
        t.database,
        await this.fleet.dest.withSession(
          t.database,
          (sql) => tickTimes(sql, phase, "destination"),
        ),
      );
    });
    return out;
  }

  async destDigests(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    await inBatches(this.fleet.tenants, CONCURRENCY, async (t) => {
      const d = await this.fleet.dest.withSession(t.database, (sql) => digests(sql));
      out.set(t.database, d.get("")!);
    });
    return out;
  }

  async cpuSeconds(): Promise<number | null> {
    const pids = await this.destPids();
    return pids.length ? pids.reduce((s, pid) => s + (processCpuSeconds(pid) ?? 0), 0) : null;
  }

  destPids(): Promise<number[]> {
    return destinationPids(this.fleet.dest, "workers");
  }

  async dispose(): Promise<void> {
    if (!this.#created) return;
    // The subscriptions go with the destination server at the end of the scenario; only stop them.
    await this.pause().catch((e) => say(`warning: native tenants: ${e.message}`));
  }
}
