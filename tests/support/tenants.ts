/** Many tenant databases on one test cluster, made from a template (fast). */
import postgres from "postgres";
import type { TestCluster } from "./cluster.ts";

/**
 * Creates a template database holding `ddl`, then `n` databases copied from
 * it, and returns their names (`<prefix>_<i>_…`, i from 1).
 */
export async function createTenants(
  c: TestCluster,
  n: number,
  opts: { ddl: string; prefix?: string },
): Promise<string[]> {
  const template = await c.createDatabase("tpl");
  const tpl = postgres(c.url(template), { max: 1, onnotice: () => {} });
  try {
    await tpl.unsafe(opts.ddl);
  } finally {
    await tpl.end(); // a template must have no session to be copied
  }
  const admin = postgres(c.url(), { max: 1, onnotice: () => {} });
  const names: string[] = [];
  try {
    for (let i = 1; i <= n; i++) {
      const name = `${opts.prefix ?? "tenant"}_${i}_${crypto.randomUUID().slice(0, 6)}`;
      await admin.unsafe(`CREATE DATABASE "${name}" TEMPLATE "${template}"`);
      names.push(name);
    }
  } finally {
    await admin.end();
  }
  return names;
}

/** A tenant database as a kvsz source: its name, its sid (its number, from 1) and a client. */
export interface TenantSource {
  db: string;
  sid: string;
  /** A superuser client on it, closed with the cluster. */
  sql: postgres.Sql;
}

/** {@link createTenants}, each with its sid and a client. */
export async function createTenantSources(
  c: TestCluster,
  n: number,
  opts: { ddl: string; prefix?: string },
): Promise<TenantSource[]> {
  const names = await createTenants(c, n, opts);
  return names.map((db, i) => ({ db, sid: String(i + 1), sql: c.sql(db) }));
}

/** The config's `databases:` entries of `tenants` (one URL each), mapping `tables(tenant)`. */
export function tenantDatabases<T extends TenantSource>(
  c: TestCluster,
  tenants: readonly T[],
  tables: (t: T) => Record<string, unknown>,
): { database: string; urls: { url: string; sid: string }[]; tables: Record<string, unknown> }[] {
  return tenants.map((t) => ({
    database: t.db,
    urls: [{ url: c.url(t.db), sid: t.sid }],
    tables: tables(t),
  }));
}
