/** Describing PostgreSQL URLs and errors for people: no password ever shown. */
import { redactText, redactUrl } from "./redact.ts";
import { errorCode, pgErrorFields } from "./errors.ts";

/** `host:port/database` of a connection URL, without user or password. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    const db = decodeURIComponent(u.pathname.replace(/^\//, ""));
    return `${u.host || u.searchParams.get("host") || "localhost"}/${db}`;
  } catch {
    return redactUrl(url);
  }
}

/** A connection error's message with every password of `url` removed. */
export function connectionProblem(e: unknown, url: string): string {
  const message = pgErrorFields(e).message ?? String(e);
  return redactText(message, [url]).replace(/\s+/g, " ").trim();
}

/** A fix for a connection error, judged from its SQLSTATE or system error code. */
export function connectionFix(e: unknown, url: string): string {
  const code = errorCode(e) ?? "";
  const message = pgErrorFields(e).message ?? "";
  const user = userOf(url);
  if (code === "28P01") return `check the user and password in the URL (role ${user})`;
  if (code === "28000" && /pg_hba/.test(message)) {
    return `add a line to pg_hba.conf for role ${user} (e.g. "host all ${user} <client-address>/32 scram-sha-256") and reload the server`;
  }
  if (code === "3D000") return `create the database or correct its name in the URL`;
  if (code === "ECONNREFUSED") {
    return "check host and port in the URL, that the server runs and that listen_addresses includes this address";
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return "check the host name in the URL";
  if (code === "NOT_POSTGRES") {
    return "check the port in the URL: something other than PostgreSQL answers there";
  }
  if (code === "SSL_NOT_SUPPORTED") {
    return "turn ssl on in the server's postgresql.conf, or lower sslmode in the URL";
  }
  if (/altnames|not in the cert/i.test(message)) {
    return "write the host exactly as the server's certificate names it (name or IP address), " +
      "or have a certificate issued for this host (see README, TLS)";
  }
  if (/certificate|TLS failed/i.test(message) || code.startsWith("SSL_")) {
    return "give the CA that issued the server's certificate as sslrootcert in the URL " +
      "(or PGSSLROOTCERT; see README, TLS)";
  }
  if (code === "WRONG_ROLE") {
    return "list the primary among the URL's hosts, or relax target_session_attrs";
  }
  if (/CONNECT_TIMEOUT|timeout/i.test(`${code} ${message}`)) {
    return "check the host and port, and that no firewall drops the connection";
  }
  return "check the URL and that the server accepts connections from here";
}

function userOf(url: string): string {
  try {
    return decodeURIComponent(new URL(url).username) || "<user>";
  } catch {
    return "<user>";
  }
}

/** A one-line description of an error, with any URL redacted. */
export function describeError(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.replace(/postgres(?:ql)?:\/\/\S+/g, (u) => redactUrl(u));
}
