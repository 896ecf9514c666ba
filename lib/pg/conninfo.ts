/**
 * Connection URLs as libpq reads them: `postgres[ql]://user:password@host:port,host2/db?param=…`,
 * with libpq's parameters and their environment-variable defaults (`PGSSLMODE`, `PGSSLROOTCERT`,
 * …). A parameter libpq does not know is sent to the server as a setting at connection start (as
 * kuvasz-streamer's driver does); one libpq knows but kvsz cannot honour is an error, never ignored.
 */
import { NeedsPersonError } from "../errors.ts";

/** libpq's `sslmode`: how much of TLS is required and checked. */
export type SslMode = "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full";

/** libpq's `target_session_attrs`: which of several hosts is accepted. */
export type TargetSessionAttrs =
  | "any"
  | "read-write"
  | "read-only"
  | "primary"
  | "standby"
  | "prefer-standby";

/** One host of a URL: a name or IP address, or a Unix socket directory (starting with `/`). */
export interface HostPort {
  host: string;
  port: number;
}

/** A parsed connection URL, with libpq's defaults and environment applied. */
export interface ConnInfo {
  /** Hosts in the order they are tried. */
  hosts: HostPort[];
  user?: string;
  password?: string;
  dbname?: string;
  sslmode: SslMode;
  /** CA file, `system` for the system's trusted roots; unset: `~/.postgresql/root.crt` if present. */
  sslrootcert?: string;
  /** Client certificate and key files; unset: `~/.postgresql/postgresql.crt`/`.key` if present. */
  sslcert?: string;
  sslkey?: string;
  /** Passphrase of an encrypted `sslkey`. */
  sslpassword?: string;
  /** Send the host name in TLS (SNI); default true. */
  sslsni: boolean;
  /** Lowest TLS version, e.g. `TLSv1.2` (libpq's default). */
  sslMinProtocolVersion?: string;
  sslMaxProtocolVersion?: string;
  /** Seconds to wait for each host; undefined: the caller's default; 0: wait forever. */
  connectTimeout?: number;
  /** TCP keepalives on (default) or off. */
  keepalives: boolean;
  /** Seconds of silence before the first keepalive probe (kvsz's default: 60). */
  keepalivesIdle?: number;
  applicationName?: string;
  /** Command-line options sent to the server, e.g. `-c search_path=app`. */
  options?: string;
  targetSessionAttrs: TargetSessionAttrs;
  /** Other parameters, sent to the server as settings at connection start. */
  settings: Record<string, string>;
}

/** A URL kvsz cannot use; the message never contains the password. */
export class ConnInfoError extends NeedsPersonError {}

/** Environment variables as read by libpq (subset); `Deno.env.toObject()` by default. */
export type Env = Record<string, string | undefined>;

const SSL_MODES: readonly SslMode[] = [
  "disable",
  "allow",
  "prefer",
  "require",
  "verify-ca",
  "verify-full",
];
const SESSION_ATTRS: readonly TargetSessionAttrs[] = [
  "any",
  "read-write",
  "read-only",
  "primary",
  "standby",
  "prefer-standby",
];

/** libpq parameters kvsz reads itself, and the environment variable each defaults from. */
const PARAMS: Record<string, string | null> = {
  host: "PGHOST",
  port: "PGPORT",
  dbname: "PGDATABASE",
  user: "PGUSER",
  password: "PGPASSWORD",
  sslmode: "PGSSLMODE",
  sslrootcert: "PGSSLROOTCERT",
  sslcert: "PGSSLCERT",
  sslkey: "PGSSLKEY",
  sslpassword: null,
  sslsni: "PGSSLSNI",
  ssl_min_protocol_version: "PGSSLMINPROTOCOLVERSION",
  ssl_max_protocol_version: "PGSSLMAXPROTOCOLVERSION",
  connect_timeout: "PGCONNECT_TIMEOUT",
  keepalives: null,
  keepalives_idle: null,
  application_name: "PGAPPNAME",
  fallback_application_name: null,
  options: "PGOPTIONS",
  target_session_attrs: "PGTARGETSESSIONATTRS",
  // Accepted for compatibility; the operating system's values apply (see README, Timeouts).
  keepalives_interval: null,
  keepalives_count: null,
  tcp_user_timeout: null,
  // libpq's defaults, which are kvsz's behaviour too.
  client_encoding: null,
  gssencmode: null,
  sslcompression: null,
  sslnegotiation: null,
  channel_binding: null,
};

/** libpq parameters kvsz cannot honour, with what to do instead. */
const UNSUPPORTED: Record<string, string> = {
  hostaddr: "give the address as host",
  service: "write the connection parameters into the URL",
  passfile: "give the password in the URL or PGPASSWORD",
  sslcrl: "certificate revocation lists are not supported",
  sslcrldir: "certificate revocation lists are not supported",
  sslcertmode: "remove it (a client certificate is sent when sslcert is given)",
  requirepeer: "remove it",
  krbsrvname: "Kerberos/GSSAPI authentication is not supported",
  gsslib: "Kerberos/GSSAPI authentication is not supported",
  gssdelegation: "Kerberos/GSSAPI authentication is not supported",
  load_balance_hosts: "remove it (hosts are tried in order)",
  replication: "remove it (kvsz opens replication connections itself)",
  require_auth: "remove it",
};

/** How to write reserved characters in a user name or password. */
const ENCODING_HINT = "write reserved characters as percent-escapes " +
  "(% as %25, / as %2F, @ as %40, : as %3A, ? as %3F, # as %23)";

/**
 * Parses a `postgres://` or `postgresql://` URL the way libpq does. Throws
 * {@link ConnInfoError} with a message that names the problem (never the password).
 */
export function parseConnInfo(url: string, env: Env = Deno.env.toObject()): ConnInfo {
  const scheme = /^postgres(?:ql)?:\/\//i.exec(url);
  if (!scheme) throw new ConnInfoError("must start with postgres:// or postgresql://");
  const rest = url.slice(scheme[0].length);
  const fail = (message: string): never => {
    throw new ConnInfoError(message);
  };
  const authorityEnd = (() => {
    const i = rest.search(/[/?#]/);
    return i < 0 ? rest.length : i;
  })();
  const authority = rest.slice(0, authorityEnd);
  const at = authority.lastIndexOf("@");
  // An '@' after the first '/', '?' or '#' (outside a parameter's value) ends a user name or
  // password with characters that need encoding: say so, and echo nothing of it.
  const laterAt = rest.indexOf("@", authorityEnd);
  if (at < 0 && laterAt >= 0) {
    const between = rest.slice(authorityEnd, laterAt);
    const q = between.indexOf("?");
    if (q < 0 || !between.slice(q).includes("=")) {
      fail(`the user name or password is not percent-encoded: ${ENCODING_HINT}`);
    }
  }
  let pathAndQuery = rest.slice(authorityEnd);
  const userinfo = at >= 0 ? authority.slice(0, at) : null;
  const hostList = at >= 0 ? authority.slice(at + 1) : authority;
  if (pathAndQuery.includes("#")) fail("a URL may not contain '#' (write it as %23)");

  const values: Record<string, string> = {};
  if (userinfo !== null) {
    const colon = userinfo.indexOf(":");
    const user = colon >= 0 ? userinfo.slice(0, colon) : userinfo;
    if (user !== "") values.user = decode(user, "user name", fail);
    if (colon >= 0) values.password = decode(userinfo.slice(colon + 1), "password", fail);
  }
  let query = "";
  const q = pathAndQuery.indexOf("?");
  if (q >= 0) {
    query = pathAndQuery.slice(q + 1);
    pathAndQuery = pathAndQuery.slice(0, q);
  }
  if (pathAndQuery.length > 1) values.dbname = decode(pathAndQuery.slice(1), "database", fail);

  const settings: Record<string, string> = {};
  for (const pair of query.split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    if (eq < 0) fail(`invalid URL parameter "${pair.slice(0, 40)}": expected name=value`);
    const name = decode(pair.slice(0, eq), "parameter name", fail);
    const value = decode(pair.slice(eq + 1).replaceAll("+", " "), `parameter ${name}`, fail);
    if (name in UNSUPPORTED) fail(`URL parameter ${name} is not supported: ${UNSUPPORTED[name]}`);
    if (name === "ssl") {
      // JDBC's and some drivers' spelling: ssl=true means sslmode=require.
      if (value === "true" || value === "1") values.sslmode ??= "require";
      continue;
    }
    if (name in PARAMS) values[name] = value;
    else settings[name] = value;
  }
  for (const [name, variable] of Object.entries(PARAMS)) {
    if (values[name] === undefined && variable && env[variable] !== undefined) {
      values[name] = env[variable]!;
    }
  }

  const info: ConnInfo = {
    hosts: hosts(hostList, values, fail),
    sslmode: oneOf(values.sslmode ?? "prefer", SSL_MODES, { name: "sslmode", fail }),
    sslsni: flag(values.sslsni ?? "1", "sslsni", fail),
    keepalives: flag(values.keepalives ?? "1", "keepalives", fail),
    targetSessionAttrs: oneOf(values.target_session_attrs ?? "any", SESSION_ATTRS, {
      name: "target_session_attrs",
      fail,
    }),
    settings,
  };
  if (values.user) info.user = values.user;
  if (values.password !== undefined) info.password = values.password;
  if (values.dbname) info.dbname = values.dbname;
  if (values.sslrootcert) info.sslrootcert = values.sslrootcert;
  if (values.sslcert) info.sslcert = values.sslcert;
  if (values.sslkey) info.sslkey = values.sslkey;
  if (values.sslpassword) info.sslpassword = values.sslpassword;
  if (values.ssl_min_protocol_version) {
    info.sslMinProtocolVersion = tlsVersion(values.ssl_min_protocol_version, fail);
  }
  if (values.ssl_max_protocol_version) {
    info.sslMaxProtocolVersion = tlsVersion(values.ssl_max_protocol_version, fail);
  }
  if (values.connect_timeout !== undefined && values.connect_timeout !== "") {
    const seconds = integer(values.connect_timeout, "connect_timeout", fail);
    // libpq: 0 (or negative) waits forever; 1 is taken as 2.
    info.connectTimeout = seconds <= 0 ? 0 : Math.max(seconds, 2);
  }
  if (values.keepalives_idle) {
    info.keepalivesIdle = integer(values.keepalives_idle, "keepalives_idle", fail);
  }
  const appName = values.application_name || values.fallback_application_name;
  if (appName) info.applicationName = appName;
  if (values.options) info.options = values.options;
  if (info.sslrootcert === "system") {
    // libpq: the system's roots make sense only with the host name checked.
    if (values.sslmode === undefined) info.sslmode = "verify-full";
    else if (info.sslmode !== "verify-full") {
      fail(`sslrootcert=system needs sslmode=verify-full, not ${info.sslmode}`);
    }
  }
  return info;
}

/** Host list from the URL's authority (`h1:5432,[::1]:5433`), else the `host`/`port` parameters. */
function hosts(
  list: string,
  values: Record<string, string>,
  fail: (message: string) => never,
): HostPort[] {
  const defaultPorts = (values.port ?? "").split(",").filter((p) => p !== "");
  const portAt = (i: number): number => {
    const text = defaultPorts.length === 1 ? defaultPorts[0] : defaultPorts[i];
    return text === undefined ? 5432 : port(text, fail);
  };
  if (list !== "") {
    return list.split(",").map((entry, i) => {
      const m = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(entry)!;
      const raw = m[1].startsWith("[") ? m[1].slice(1, -1) : m[1];
      const host = raw === "" ? (values.host ?? "localhost") : decode(raw, "host", fail);
      return { host, port: m[2] !== undefined && m[2] !== "" ? port(m[2], fail) : portAt(i) };
    });
  }
  const named = (values.host ?? "").split(",").filter((h) => h !== "");
  if (named.length === 0) return [{ host: "localhost", port: portAt(0) }];
  return named.map((host, i) => ({ host, port: portAt(i) }));
}

function port(text: string, fail: (message: string) => never): number {
  const n = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 65535)) fail(`invalid port "${text.slice(0, 20)}"`);
  return n;
}

function decode(text: string, what: string, fail: (message: string) => never): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return fail(`invalid percent-encoding in the ${what}: ${ENCODING_HINT}`);
  }
}

/** Options of {@link oneOf}. */
interface OneOfOptions {
  /** The parameter's name in the message. */
  name: string;
  /** Throws the error for a bad value. */
  fail: (message: string) => never;
}

function oneOf<T extends string>(value: string, allowed: readonly T[], opts: OneOfOptions): T {
  const { name, fail } = opts;
  if ((allowed as readonly string[]).includes(value)) return value as T;
  return fail(`${name} must be one of ${allowed.join(", ")}, not "${value.slice(0, 30)}"`);
}

function flag(value: string, name: string, fail: (message: string) => never): boolean {
  if (value === "1") return true;
  if (value === "0") return false;
  return fail(`${name} must be 0 or 1, not "${value.slice(0, 30)}"`);
}

function integer(value: string, name: string, fail: (message: string) => never): number {
  if (!/^-?[0-9]+$/.test(value.trim())) {
    fail(`${name} must be a whole number of seconds, not "${value.slice(0, 30)}"`);
  }
  return Number(value);
}

function tlsVersion(value: string, fail: (message: string) => never): string {
  const versions = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];
  if (versions.includes(value)) return value;
  return fail(`TLS protocol version must be one of ${versions.join(", ")}, not "${value}"`);
}

/**
 * The server a URL names, as `host:port` (several hosts joined by commas):
 * URLs that differ only in database, user or parameters share it.
 */
export function serverOf(url: string): string {
  try {
    return parseConnInfo(url).hosts.map(hostLabel).join(",");
  } catch {
    try {
      return new URL(url).host || "localhost"; // a URL kvsz cannot use: validate says why
    } catch {
      return "unknown server";
    }
  }
}

/** `host:port` of a host entry, with IPv6 addresses bracketed. */
export function hostLabel(h: HostPort): string {
  if (h.host.startsWith("/")) return `${h.host}/.s.PGSQL.${h.port}`;
  return h.host.includes(":") ? `[${h.host}]:${h.port}` : `${h.host}:${h.port}`;
}
