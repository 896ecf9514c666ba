/**
 * Opens the socket under every kvsz connection, as libpq would: each host of the URL in turn,
 * a time limit on each, TLS negotiated and checked per `sslmode` against exactly the host in the
 * URL, TCP keepalives, and a refusal of anything that does not answer like PostgreSQL. The
 * driver then speaks the protocol over the socket as if it were plain TCP, so the fast paths that
 * read the socket themselves (replication stream, COPY relay) work over TLS too.
 */
import net from "node:net";
import tls from "node:tls";
import { type ConnInfo, hostLabel, type HostPort, type SslMode } from "./conninfo.ts";
import { errorCode } from "./errors.ts";
import { KvszError } from "../errors.ts";

/** A connection kvsz could not open; `code` is the system's (ECONNREFUSED) or kvsz's own. */
export class ConnectError extends KvszError {
  constructor(message: string, readonly code: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** What a server says of itself, for `target_session_attrs`. */
export interface ServerRole {
  readOnly: boolean;
  inRecovery: boolean;
}

/** Options of {@link socketFactory}. */
export interface SocketFactoryOptions {
  /** Milliseconds for the socket and TLS of each host; 0 waits forever. */
  timeoutMs: number;
  /** Seconds of idle before TCP keepalive probes, when the URL does not say (default 60). */
  keepalivesIdle?: number;
  /** Asks `host` what it is (a separate short session); needed unless target_session_attrs=any. */
  probeRole?: (host: HostPort) => Promise<ServerRole>;
  /** The startup packet's user, database and replication flag (for `sslmode=allow`'s probe). */
  startup: () => Record<string, string>;
  /** Called with each socket handed to the driver. */
  onSocket?: (socket: net.Socket) => void;
}

const SSL_REQUEST = new Uint8Array([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
/** First bytes a PostgreSQL server may answer a startup packet with: R, E, v, N. */
const FIRST_BYTES = new Set([0x52, 0x45, 0x76, 0x4e]);

/**
 * A socket factory for npm:postgres (its `socket` option) opening connections for `info`. The
 * driver sees one host: the factory picks among the URL's hosts on each (re)connect.
 */
export function socketFactory(
  info: ConnInfo,
  opts: SocketFactoryOptions,
): () => Promise<net.Socket> {
  /** Set when a socket closed before the server said anything: the next attempt fails instead. */
  let silent: string | null = null;
  // The driver is left stuck when the factory throws: a failure comes as a socket that fails.
  return async () => {
    if (silent !== null) {
      const label = silent;
      silent = null;
      return failing(
        new ConnectError(
          `${label} closed the connection without answering: is it a PostgreSQL server (check host and port)?`,
          "NOT_POSTGRES",
        ),
      );
    }
    const failures: { host: HostPort; error: Error }[] = [];
    for (const host of await candidates(info, opts, failures)) {
      try {
        const socket = await open(info, host, opts);
        watchFirstAnswer(socket, hostLabel(host), (label) => (silent = label));
        Object.assign(socket, { host: host.host, port: host.port });
        opts.onSocket?.(socket);
        return socket;
      } catch (e) {
        failures.push({ host, error: e as Error });
      }
    }
    return failing(combined(failures));
  };
}

/** A socket that fails with `error` as soon as the driver listens to it. */
function failing(error: Error): net.Socket {
  const socket = new net.Socket();
  socket.write = () => true; // the startup packet the driver sends goes nowhere
  setTimeout(() => socket.destroy(error), 0);
  return socket;
}

/** The hosts to try, in order; with target_session_attrs, those whose role fits. */
async function candidates(
  info: ConnInfo,
  opts: SocketFactoryOptions,
  failures: { host: HostPort; error: Error }[],
): Promise<HostPort[]> {
  const attrs = info.targetSessionAttrs;
  if (attrs === "any" || !opts.probeRole) return info.hosts;
  const fitting: HostPort[] = [];
  const others: HostPort[] = [];
  for (const host of info.hosts) {
    let role: ServerRole;
    try {
      role = await opts.probeRole(host);
    } catch (e) {
      failures.push({ host, error: e as Error });
      continue;
    }
    const fits = attrs === "read-write"
      ? !role.readOnly
      : attrs === "read-only"
      ? role.readOnly
      : attrs === "primary"
      ? !role.inRecovery
      : role.inRecovery; // standby, prefer-standby
    if (fits) fitting.push(host);
    else {
      others.push(host);
      const is = attrs === "read-write" || attrs === "read-only"
        ? (role.readOnly ? "read-only" : "read-write")
        : (role.inRecovery ? "a standby" : "a primary");
      failures.push({
        host,
        error: new ConnectError(`is ${is} (target_session_attrs=${attrs})`, "WRONG_ROLE"),
      });
    }
    // libpq stops at the first fitting host.
    if (fitting.length > 0) return fitting;
  }
  return attrs === "prefer-standby" ? others : fitting;
}

/** One error for every host that failed: the only one's as it is, several summed up. */
function combined(failures: { host: HostPort; error: Error }[]): Error {
  if (failures.length === 1) {
    const { host, error } = failures[0];
    const code = errorCode(error) ?? "CONNECT_FAILED";
    const message = error.message.includes(hostLabel(host))
      ? error.message
      : `${hostLabel(host)}: ${error.message}`;
    return new ConnectError(message, code, { cause: error });
  }
  const parts = failures.map(({ host, error }) => `${hostLabel(host)}: ${error.message}`);
  const codes = new Set(failures.map((f) => errorCode(f.error)));
  const code = codes.size === 1 ? [...codes][0] ?? "CONNECT_FAILED" : "CONNECT_FAILED";
  return new ConnectError(`could not connect to any host: ${parts.join("; ")}`, code);
}

/** Opens the socket to `host`: TCP or Unix, then TLS as `sslmode` says. */
async function open(
  info: ConnInfo,
  host: HostPort,
  opts: SocketFactoryOptions,
): Promise<net.Socket> {
  const unix = host.host.startsWith("/");
  const plain = await tcp(host, opts.timeoutMs);
  if (!unix) {
    plain.setNoDelay(true);
    if (info.keepalives) {
      plain.setKeepAlive(true, (info.keepalivesIdle ?? opts.keepalivesIdle ?? 60) * 1000);
    }
  }
  // libpq never uses SSL on Unix sockets.
  if (unix || info.sslmode === "disable") return plain;
  try {
    if (info.sslmode === "allow" && await plainAccepted(host, opts)) return plain;
    plain.write(SSL_REQUEST);
    const step = { host, timeoutMs: opts.timeoutMs };
    const reply = await firstAnswer(plain, "SSL negotiation", step);
    const answer = reply[0];
    // 'S' or 'N', and nothing after it: anything else is not PostgreSQL.
    if (reply.length > 1 || (answer !== 0x53 && answer !== 0x4e)) {
      throw notPostgres(hostLabel(host), answer, reply);
    }
    if (answer === 0x4e) { // N
      if (info.sslmode === "prefer") return plain;
      throw new ConnectError(
        `server does not support SSL, but sslmode=${info.sslmode} was requested ` +
          `(turn ssl on in the server's postgresql.conf, or use sslmode=prefer)`,
        "SSL_NOT_SUPPORTED",
      );
    }
    return await upgrade(plain, info, step);
  } catch (e) {
    plain.destroy();
    throw e;
  }
}

/** Connects a TCP (or Unix) socket, failing after `timeoutMs`. */
function tcp(host: HostPort, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = host.host.startsWith("/")
      ? net.connect({ path: `${host.host}/.s.PGSQL.${host.port}` })
      : net.connect({ host: host.host, port: host.port });
    const timer = timeoutMs > 0
      ? setTimeout(() => {
        socket.destroy();
        reject(
          new ConnectError(
            `${hostLabel(host)}: no connection within ${timeoutMs / 1000} s (connect_timeout)`,
            "CONNECT_TIMEOUT",
          ),
        );
      }, timeoutMs)
      : undefined;
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      resolve(socket);
    });
    socket.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** One step of opening a connection: which server, and how long it may take. */
interface Step {
  /** The server, named in errors. */
  host: HostPort;
  /** Milliseconds the step may take (0 = no limit). */
  timeoutMs: number;
}

/** The first chunk the server sends, or why none came; `what` names the exchange in errors. */
function firstAnswer(socket: net.Socket, what: string, step: Step): Promise<Uint8Array> {
  const { host, timeoutMs } = step;
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      socket.removeListener("data", onData);
      socket.removeListener("close", onClose);
      socket.removeListener("error", onError);
    };
    const onData = (chunk: Uint8Array) => {
      done();
      resolve(chunk);
    };
    const onClose = () => {
      done();
      reject(
        new ConnectError(
          `${hostLabel(host)} closed the connection during ${what}: is it a PostgreSQL server?`,
          "NOT_POSTGRES",
        ),
      );
    };
    const onError = (e: Error) => {
      done();
      reject(e);
    };
    const timer = timeoutMs > 0
      ? setTimeout(() => {
        done();
        reject(
          new ConnectError(
            `${hostLabel(host)}: no answer to the ${what} within ${timeoutMs / 1000} s`,
            "CONNECT_TIMEOUT",
          ),
        );
      }, timeoutMs)
      : undefined;
    socket.on("data", onData);
    socket.once("close", onClose);
    socket.once("error", onError);
  });
}

/** Wraps `plain` in TLS with libpq's checks for the mode: chain (verify-ca), and host (verify-full). */
async function upgrade(plain: net.Socket, info: ConnInfo, step: Step): Promise<net.Socket> {
  const { host, timeoutMs } = step;
  const options = await tlsOptions(info, host);
  return await new Promise((resolve, reject) => {
    const secure = tls.connect({ ...options, socket: plain });
    const timer = timeoutMs > 0
      ? setTimeout(() => {
        secure.destroy();
        reject(
          new ConnectError(
            `${hostLabel(host)}: TLS handshake not done within ${timeoutMs / 1000} s`,
            "CONNECT_TIMEOUT",
          ),
        );
      }, timeoutMs)
      : undefined;
    secure.once("secureConnect", () => {
      clearTimeout(timer);
      secure.removeAllListeners("error");
      resolve(secure);
    });
    secure.once("error", (e: Error & { code?: string }) => {
      clearTimeout(timer);
      secure.destroy();
      reject(
        new ConnectError(
          `${hostLabel(host)}: TLS failed (sslmode=${info.sslmode}): ${e.message}`,
          e.code ?? "TLS_FAILED",
          { cause: e },
        ),
      );
    });
  });
}

/** Node TLS options for the URL's sslmode and certificate files. */
async function tlsOptions(info: ConnInfo, host: HostPort): Promise<tls.ConnectionOptions> {
  const home = Deno.env.get("HOME") ?? "";
  const rootFile = info.sslrootcert ?? await existing(`${home}/.postgresql/root.crt`);
  const certFile = info.sslcert ?? await existing(`${home}/.postgresql/postgresql.crt`);
  const keyFile = info.sslkey ??
    (certFile ? await existing(`${home}/.postgresql/postgresql.key`) : undefined);
  let mode: SslMode = info.sslmode;
  // libpq: with a root certificate at hand, require checks the chain like verify-ca.
  if (mode === "require" && rootFile) mode = "verify-ca";
  const verify = mode === "verify-ca" || mode === "verify-full";
  if (verify && !rootFile) {
    throw new ConnectError(
      `sslmode=${mode} needs the CA of the server's certificate: give sslrootcert=<file> in the URL ` +
        `(or PGSSLROOTCERT, or ~/.postgresql/root.crt), or sslrootcert=system for the system's trusted roots`,
      "SSL_NO_ROOT_CERT",
    );
  }
  const isIp = net.isIP(host.host) !== 0;
  const options: tls.ConnectionOptions = {
    rejectUnauthorized: verify,
    // SNI carries names only, as libpq (sslsni=1) sends it.
    servername: info.sslsni && !isIp ? host.host : undefined,
    // The identity is checked against exactly the host in the URL, a name or an IP address.
    checkServerIdentity: mode === "verify-full"
      ? (_: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(host.host, cert)
      : () => undefined,
  };
  if (verify && rootFile && rootFile !== "system") {
    options.ca = [await readFile(rootFile, "sslrootcert")];
  }
  if (certFile) {
    options.cert = await readFile(certFile, "sslcert");
    if (!keyFile) {
      throw new ConnectError(
        `sslcert ${certFile} needs its key: give sslkey=<file>`,
        "SSL_NO_KEY",
      );
    }
    options.key = await readFile(keyFile, "sslkey");
    if (info.sslpassword) options.passphrase = info.sslpassword;
  }
  if (info.sslMinProtocolVersion) {
    options.minVersion = info.sslMinProtocolVersion as tls.SecureVersion;
  }
  if (info.sslMaxProtocolVersion) {
    options.maxVersion = info.sslMaxProtocolVersion as tls.SecureVersion;
  }
  return options;
}

async function existing(path: string): Promise<string | undefined> {
  try {
    return (await Deno.stat(path)).isFile ? path : undefined;
  } catch {
    return undefined;
  }
}

async function readFile(path: string, param: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new ConnectError(
      `cannot read the ${param} file ${path}: ${(e as Error).message}`,
      "SSL_FILE",
    );
  }
}

/**
 * `sslmode=allow`: libpq tries without SSL first and with SSL only when that
 * fails. A plain startup packet tells: the server asks for authentication
 * (accepted) or answers with an error (pg_hba.conf wants SSL).
 */
async function plainAccepted(host: HostPort, opts: SocketFactoryOptions): Promise<boolean> {
  const probe = await tcp(host, opts.timeoutMs);
  try {
    const params = Object.entries(opts.startup()).flatMap(([k, v]) => [k, v]);
    const body = new TextEncoder().encode(params.join("\0") + "\0\0");
    const packet = new Uint8Array(8 + body.length);
    const view = new DataView(packet.buffer);
    view.setInt32(0, packet.length);
    view.setInt32(4, 196608); // protocol 3.0
    packet.set(body, 8);
    probe.write(packet);
    const reply = await firstAnswer(probe, "startup", { host, timeoutMs: opts.timeoutMs })
      .catch(() => null);
    return reply?.[0] === 0x52 || reply?.[0] === 0x76; // authentication request, protocol version
  } finally {
    probe.destroy();
  }
}

/**
 * Fails the socket when the server's first answer is not PostgreSQL's, and
 * notes a socket that closes before saying anything (the driver would retry
 * that at once, for ever).
 */
function watchFirstAnswer(socket: net.Socket, label: string, onSilent: (label: string) => void) {
  let answered = false;
  const onData = (chunk: Uint8Array) => {
    socket.removeListener("data", onData);
    answered = true;
    if (!FIRST_BYTES.has(chunk[0])) socket.destroy(notPostgres(label, chunk[0], chunk));
  };
  socket.on("data", onData);
  socket.resume();
  socket.once("close", () => {
    if (!answered) onSilent(label);
  });
}

/** The error for a peer that is not PostgreSQL, quoting what it said. */
function notPostgres(label: string, first: number, chunk?: Uint8Array): ConnectError {
  const text = chunk
    ? new TextDecoder().decode(chunk.subarray(0, 40)).replace(/[^\x20-\x7e]+/g, " ").trim()
    : String.fromCharCode(first);
  return new ConnectError(
    `${label} is not a PostgreSQL server (received invalid response to SSL negotiation or startup: "${text}"): check host and port`,
    "NOT_POSTGRES",
  );
}
