/** The databases of a source server that could be tenants (for `discover`). */
import { connect, type Sql } from "../pg/connect.ts";

/**
 * Names of the databases of the server `sql` is connected to that accept
 * connections and are not templates, sorted.
 */
export async function listDatabases(sql: Sql): Promise<string[]> {
  const rows = await sql.unsafe(
    `SELECT datname FROM pg_catalog.pg_database
      WHERE datallowconn AND NOT datistemplate ORDER BY datname`,
  );
  return rows.map((r) => r.datname as string);
}

/** Options of {@link listServerDatabases}. */
export interface ListOptions {
  /** Seconds to wait for the connection (default 10, or the URL's `connect_timeout`). */
  connectTimeout?: number;
}

/** {@link listDatabases} of the server at `url`, through a connection opened for it and closed. */
export async function listServerDatabases(url: string, opts: ListOptions = {}): Promise<string[]> {
  const sql = connect(url, { connectTimeout: opts.connectTimeout ?? 10 });
  try {
    return await listDatabases(sql);
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

/**
 * Whether the server at `url` still lists database `name` (accepting
 * connections); null when the server cannot say (unreachable).
 */
export async function databaseListed(
  url: string,
  name: string,
  opts: ListOptions = {},
): Promise<boolean | null> {
  try {
    return (await listServerDatabases(url, opts)).includes(name);
  } catch {
    return null;
  }
}
