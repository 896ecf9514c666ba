/** Opens PostgreSQL clients with the session settings that make text values round-trip. */
import net from "node:net";
import postgres from "postgres";

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

/** Options for {@link connect}. */
export interface ConnectOptions {
  /** Pool size (default 1). */
  max?: number;
  /** Open a logical replication connection (`replication=database`). */
  replication?: boolean;
  /** Seconds to wait for the connection (default 10). */
  connectTimeout?: number;
  /** Extra startup parameters. */
  params?: Record<string, string>;
}

/** A porsager client; values of every type come back as strings (no parsing). */
export type Sql = postgres.Sql<Record<string, never>>;

/**
 * Opens a client with {@link SESSION_SETTINGS}. Dates and timestamps come back as
 * the server's text; int8 and numeric as strings; int2/int4/float, bool and json
 * are parsed.
 */
export function connect(url: string, opts: ConnectOptions = {}): Sql {
  const sockets: net.Socket[] = [];
  const sql = postgres(url, {
    max: opts.max ?? 1,
    connect_timeout: opts.connectTimeout ?? 10,
    idle_timeout: 0,
    max_lifetime: null,
    onnotice: () => {},
    prepare: !opts.replication,
    fetch_types: false,
    // Not in the driver's type definitions, but a documented option.
    ...({ socket: noDelaySocket(sockets) } as Record<string, unknown>),
    connection: {
      ...SESSION_SETTINGS,
      ...(opts.replication ? { replication: "database" } : {}),
      ...opts.params,
    },
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
  // Plain TCP only: under TLS the driver reads a TLS socket layered on this one.
  if ((opts.max ?? 1) === 1 && plainTcp(url)) SOCKETS.set(sql, sockets);
  return sql;
}

const SOCKETS = new WeakMap<Sql, net.Socket[]>();

function plainTcp(url: string): boolean {
  try {
    const sslmode = new URL(url).searchParams.get("sslmode");
    return !sslmode || sslmode === "disable";
  } catch {
    return false;
  }
}

/**
 * The TCP socket of a one-connection client over plain TCP, for a caller that
 * must read or write protocol bytes itself (`lib/source/copy_relay.ts`); null
 * for pools, TLS, or before the first connection.
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

/**
 * A socket factory for npm:postgres that turns Nagle's algorithm off: the
 * client's small messages sent back to back (a COPY's last data and its
 * CopyDone, a COMMIT after a COPY) otherwise wait for the server's delayed
 * ACK, 40 ms each. Rotates over the hosts of a multi-host URL, as the driver does.
 */
function noDelaySocket(created: net.Socket[]): (
  o: { host: string[]; port: number[]; path?: string | false },
) => net.Socket {
  let next = 0;
  return (o) => {
    const i = next++ % o.host.length;
    const socket = o.path
      ? net.connect({ path: o.path })
      : net.connect({ host: o.host[i], port: o.port[i] ?? o.port[0] });
    socket.setNoDelay(true);
    created.splice(0, created.length, socket);
    // The driver names the host in TLS (SNI) from these, as for its own sockets.
    Object.assign(socket, { host: o.host[i], port: o.port[i] ?? o.port[0] });
    return socket;
  };
}

/** Returns the server's major version (e.g. 17) from `server_version_num`. */
export async function serverMajor(sql: Sql): Promise<number> {
  const [row] = await sql.unsafe("SHOW server_version_num");
  return Math.floor(Number(row.server_version_num) / 10000);
}
