/** Opens PostgreSQL clients with the session settings that make text values round-trip. */
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
  return postgres(url, {
    max: opts.max ?? 1,
    connect_timeout: opts.connectTimeout ?? 10,
    idle_timeout: 0,
    max_lifetime: null,
    onnotice: () => {},
    prepare: !opts.replication,
    fetch_types: false,
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
}

/** Returns the server's major version (e.g. 17) from `server_version_num`. */
export async function serverMajor(sql: Sql): Promise<number> {
  const [row] = await sql.unsafe("SHOW server_version_num");
  return Math.floor(Number(row.server_version_num) / 10000);
}
