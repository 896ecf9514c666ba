/** Opens PostgreSQL clients with the session settings that make text values round-trip. */
import net from "node:net";
import postgres from "postgres";
import { type ConnInfo, type HostPort, parseConnInfo } from "./conninfo.ts";
import { type ServerRole, socketFactory } from "./socket.ts";

/** Session settings sent at connection start on every kvsz connection. */
export const SESSION_SETTINGS: Record<string, string> = {
  application_name: "kvsz",
  DateStyle: "ISO, YMD",
  IntervalStyle: "postgres",
  TimeZone: "UTC",
  extra_float_digits: "3",
  lc_monetary: "C",
  bytea_output: "hex",
};

const { application_name: _, ...ROUND_TRIP_SETTINGS } = SESSION_SETTINGS;

/** Options for {@link connect}. */
export interface ConnectOptions {
  /** Pool size (default 1). */
  max?: number;
  /** Open a logical replication connection (`replication=database`). */
  replication?: boolean;
  /** Seconds to wait for each host, unless the URL says (`connect_timeout`); default 10. */
  connectTimeout?: number;
  /** Extra startup parameters. */
  params?: Record<string, string>;
  /** Seconds a connection may sit idle before it is closed (the next query opens one); 0: never (default). */
  idleTimeout?: number;
}

/** A porsager client; values of every type come back as strings (no parsing). */
export type Sql = postgres.Sql<Record<string, never>>;

/**
 * Opens a client for a libpq-style URL (see conninfo.ts; TLS, hosts and
 * timeouts as libpq, see socket.ts) with {@link SESSION_SETTINGS}. Dates and
 * timestamps come back as the server's text; int8 and numeric as strings;
 * int2/int4/float, bool and json are parsed. Throws ConnInfoError for a URL
 * kvsz cannot use.
 */
export function connect(url: string, opts: ConnectOptions = {}): Sql {
  return connectInfo(parseConnInfo(url), opts);
}

function connectInfo(info: ConnInfo, opts: ConnectOptions): Sql {
  const sockets: net.Socket[] = [];
  const timeout = info.connectTimeout ?? opts.connectTimeout ?? 10;
  // The URL's settings, then those that make values round-trip (they win).
  const connection: Record<string, string> = {
    application_name: info.applicationName ?? SESSION_SETTINGS.application_name,
    ...(info.options ? { options: info.options } : {}),
    ...info.settings,
    ...ROUND_TRIP_SETTINGS,
    ...(opts.replication ? { replication: "database" } : {}),
    ...opts.params,
  };
  const user = info.user ?? Deno.env.get("USER") ?? "postgres";
  const database = info.dbname ?? user;
  const sql = postgres({
    // The driver sees one host; the socket factory picks among the URL's.
    host: info.hosts[0].host,
    port: info.hosts[0].port,
    user,
    pass: info.password ?? "",
    database,
    ssl: false,
    max: opts.max ?? 1,
    connect_timeout: timeout,
    idle_timeout: opts.idleTimeout ?? 0,
    max_lifetime: null,
    keep_alive: null,
    onnotice: () => {},
    prepare: !opts.replication,
    fetch_types: false,
    // Not in the driver's type definitions, but a documented option.
    ...({
      socket: socketFactory(info, {
        timeoutMs: timeout * 1000,
        startup: () => ({
          user,
          database,
          ...(opts.replication ? { replication: "database" } : {}),
        }),
        probeRole: (host) => probeRole(info, host, { ...opts, max: 1 }),
        onSocket: (socket) => sockets.splice(0, sockets.length, socket),
      }),
    } as Record<string, unknown>),
    connection,
    // Keep timestamps as the server's text (microseconds survive).
    types: {
      date: {
        to: 1184,
        from: [1082, 1083, 1114, 1184, 1266],
        serialize: (x: unknown) => x instanceof Date ? x.toISOString() : String(x),
        parse: (x: string) => x,
      },
    },
    transform: { undefined: null },
  }) as unknown as Sql;
  if ((opts.max ?? 1) === 1) SOCKETS.set(sql, sockets);
  return sql;
}

/** Asks `host` whether it is read-only and in recovery, on a session of its own. */
async function probeRole(
  info: ConnInfo,
  host: HostPort,
  opts: ConnectOptions,
): Promise<ServerRole> {
  const sql = connectInfo({ ...info, hosts: [host], targetSessionAttrs: "any" }, opts);
  try {
    const [row] = await sql.unsafe(
      `SELECT pg_catalog.pg_is_in_recovery() AS in_recovery,
              pg_catalog.current_setting('transaction_read_only') AS read_only`,
    );
    return {
      inRecovery: row.in_recovery === true || row.in_recovery === "t",
      readOnly: row.read_only === "on",
    };
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

const SOCKETS = new WeakMap<Sql, net.Socket[]>();

/**
 * The socket of a one-connection client (plain TCP or TLS), for a caller that
 * must read or write protocol bytes itself (`lib/source/copy_relay.ts`); null
 * for pools, or before the first connection.
 */
export function socketOf(sql: Sql): net.Socket | null {
  const socket = SOCKETS.get(sql)?.at(-1);
  return socket && !socket.destroyed ? socket : null;
}

/** Like {@link socketOf}, but connects first when the client has no connection yet. */
export async function connectedSocketOf(sql: Sql): Promise<net.Socket | null> {
  if (!SOCKETS.has(sql)) return null;
  if (!socketOf(sql)) await sql.unsafe("SELECT 1");
  return socketOf(sql);
}

/** Returns the server's major version (e.g. 17) from `server_version_num`. */
export async function serverMajor(sql: Sql): Promise<number> {
  const [row] = await sql.unsafe("SHOW server_version_num");
  return Math.floor(Number(row.server_version_num) / 10000);
}
