/**
 * The servers and databases of the `tenants` scenario: a source server holding
 * N tenant databases (each an `accounts` table of a few rows per tenant and a
 * `ticks` table for latency), and a destination server at PostgreSQL's default
 * `max_connections = 100` holding kvsz's one `tenants` database (targets with
 * `sid`) and native's one database per tenant. Tenant databases are created
 * from a template database, a few at a time.
 */
import { type Server, SERVER_SETTINGS, startServer } from "../servers.ts";
import { type CpuSplit, cpuSplit, pinTree, postmasterPid } from "./cpus.ts";
import { say } from "../util.ts";

/** kvsz's destination database (one table per source table, keyed by sid). */
export const KVSZ_DEST_DB = "tenants";
/** Publication of every tenant database, made in the template (native subscribes to it). */
export const NATIVE_PUBLICATION = "tenant_pub";
const SOURCE_TEMPLATE = "tenant_template";
const NATIVE_TEMPLATE = "tenant_template";

/** One tenant: its database (same name on both servers) and its sid for kvsz. */
export interface Tenant {
  index: number;
  database: string;
  sid: string;
}

/** The two servers of the scenario and its tenants; `stop()` destroys both servers. */
export interface Fleet {
  source: Server;
  dest: Server;
  tenants: Tenant[];
  /** `max_connections` of the destination (PostgreSQL's default, 100). */
  destMaxConnections: number;
  /** The CPUs of each side when they are split (cpus.ts); null: shared. */
  cpus: CpuSplit | null;
  stop(): Promise<void>;
}

/** The tenants' names: tenant_0001 … with sid t0001 …. */
export function tenantList(n: number): Tenant[] {
  const width = Math.max(4, String(n).length);
  return Array.from({ length: n }, (_, i) => {
    const pad = String(i + 1).padStart(width, "0");
    return { index: i, database: `tenant_${pad}`, sid: `t${pad}` };
  });
}

/**
 * Starts the scenario's own two servers. The source fits N tenants (slots,
 * walsenders and connections for both engines and the bench's load); the
 * destination keeps `max_connections = 100` and gets one logical replication
 * worker and replication origin per native subscription (plus room for table
 * syncs) when `native`.
 */
export async function startFleet(
  major: number,
  n: number,
  opts: { native: boolean; splitCpus: boolean },
): Promise<Fleet> {
  const started: { stop(): Promise<void> }[] = [];
  const stop = async () => {
    for (const s of started.reverse()) await s.stop();
  };
  try {
    const source = await startServer("tenant source", major, {
      ...SERVER_SETTINGS,
      max_connections: 4 * n + 100,
      max_wal_senders: n + 50,
      max_replication_slots: 2 * n + 50,
    });
    started.push(source);
    const destMaxConnections = 100;
    const dest = await startServer("tenant destination", major, {
      ...SERVER_SETTINGS,
      max_connections: destMaxConnections,
      ...(opts.native
        ? {
          max_logical_replication_workers: n + 8,
          max_worker_processes: n + 16,
          // On a subscriber this bounds the replication origins: one per subscription, and one
          // per table until its sync is done (the launcher syncs many tenants' tables at once).
          max_replication_slots: 3 * n + 50,
        }
        : {}),
    });
    started.push(dest);
    const cpus = opts.splitCpus ? await cpuSplit() : null;
    if (cpus) {
      await pinTree(await postmasterPid(`${source.server.cluster.dir}/data`), cpus.source);
      await pinTree(await postmasterPid(`${dest.server.cluster.dir}/data`), cpus.destination);
      await pinTree(Deno.pid, cpus.source); // the benchmark is the source's load
      started.unshift({ stop: () => pinTree(Deno.pid, cpus.all) }); // undone last
    }
    return {
      source: source.server,
      dest: dest.server,
      tenants: tenantList(n),
      destMaxConnections,
      cpus,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Source DDL of a tenant: a keyed accounts table and a tick table (one row per load transaction). */
const SOURCE_DDL = (rows: number) => [
  `CREATE TABLE accounts (id integer PRIMARY KEY, balance integer NOT NULL, owner text NOT NULL,
     updated_at timestamptz NOT NULL DEFAULT now())`,
  `INSERT INTO accounts (id, balance, owner) SELECT i, 0, 'owner ' || i FROM generate_series(1, ${rows}) i`,
  `CREATE TABLE ticks (id bigserial PRIMARY KEY, phase smallint NOT NULL)`,
  `CREATE PUBLICATION ${NATIVE_PUBLICATION} FOR TABLE accounts, ticks`,
  `VACUUM ANALYZE`,
];

/**
 * Destination DDL: with `sid` for kvsz's one database, without for native's
 * per-tenant ones. `dst_ts` is when the engine wrote the tick (the source has
 * no such column).
 */
export function destinationDdl(withSid: boolean): string[] {
  const sid = withSid ? "sid text NOT NULL, " : "";
  const key = withSid ? "sid, " : "";
  return [
    `CREATE TABLE accounts (${sid}id integer NOT NULL, balance integer NOT NULL,
       owner text NOT NULL, updated_at timestamptz NOT NULL, PRIMARY KEY (${key}id))`,
    `CREATE TABLE ticks (${sid}id bigint NOT NULL, phase smallint NOT NULL,
       dst_ts timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (${key}id))`,
  ];
}

/**
 * Creates every tenant database on the source (from a template holding the
 * tables, `rows` accounts and the native publication), kvsz's destination
 * database, and (when `native`) one destination database per tenant.
 */
export async function setupFleet(fleet: Fleet, rows: number, native: boolean): Promise<void> {
  const { source, dest, tenants } = fleet;
  const started = performance.now();
  await source.recreateDatabase(SOURCE_TEMPLATE);
  for (const ddl of SOURCE_DDL(rows)) await source.sql(SOURCE_TEMPLATE).unsafe(ddl);
  await source.close(SOURCE_TEMPLATE);
  await createFromTemplate(source, SOURCE_TEMPLATE, tenants);
  await dest.recreateDatabase(KVSZ_DEST_DB);
  for (const ddl of destinationDdl(true)) await dest.sql(KVSZ_DEST_DB).unsafe(ddl);
  if (native) {
    await dest.recreateDatabase(NATIVE_TEMPLATE);
    for (const ddl of destinationDdl(false)) await dest.sql(NATIVE_TEMPLATE).unsafe(ddl);
    await dest.close(NATIVE_TEMPLATE);
    await createFromTemplate(dest, NATIVE_TEMPLATE, tenants);
  }
  say(
    `  tenants: ${tenants.length} tenant databases × ${rows.toLocaleString("en-US")} accounts${
      native ? ", and as many native destination databases" : ""
    } in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
}

async function createFromTemplate(server: Server, template: string, tenants: Tenant[]) {
  await inBatches(tenants, 4, async (t) => {
    await server.withSession(
      "postgres",
      (sql) =>
        sql.unsafe(`CREATE DATABASE "${t.database}" TEMPLATE "${template}" STRATEGY FILE_COPY`),
    );
  });
}

/** Runs `task` over `items`, at most `concurrency` at once. */
export async function inBatches<T>(
  items: T[],
  concurrency: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) await task(items[next++]);
    }),
  );
}
