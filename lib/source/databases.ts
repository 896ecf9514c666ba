/** The databases of a source server that could be tenants (for `discover`), and its slots. */
import { connect } from "../pg/connect.ts";

/** What a server holds, as discovery reads it. */
export interface ServerListing {
  /** Databases that accept connections and are not templates, sorted. */
  databases: string[];
  /** Its logical replication slots: the database of each, by slot name. */
  slots: Map<string, string>;
}

/** Options of {@link listServer}. */
export interface ListOptions {
  /** Seconds to wait for the connection (default 10, or the URL's `connect_timeout`). */
  connectTimeout?: number;
}

/** The {@link ServerListing} of the server at `url`, through a connection opened for it and closed. */
export async function listServer(url: string, opts: ListOptions = {}): Promise<ServerListing> {
  const sql = connect(url, { connectTimeout: opts.connectTimeout ?? 10 });
  try {
    const databases = await sql.unsafe(
      `SELECT datname FROM pg_catalog.pg_database
        WHERE datallowconn AND NOT datistemplate ORDER BY datname`,
    );
    const slots = await sql.unsafe(
      `SELECT slot_name, database FROM pg_catalog.pg_replication_slots
        WHERE slot_type = 'logical'`,
    );
    return {
      databases: databases.map((r) => r.datname as string),
      slots: new Map(slots.map((r) => [r.slot_name as string, r.database as string])),
    };
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
    return (await listServer(url, opts)).databases.includes(name);
  } catch {
    return null;
  }
}
