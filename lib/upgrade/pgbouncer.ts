/**
 * A switchover's fence through PgBouncer (`--pgbouncer <admin URL>`):
 * `PAUSE db` on its admin console waits for the transactions in flight to
 * end and closes its server connections, then holds every client query of
 * the database in its queue (the clients wait, they do not fail) until
 * `RESUME db`, once PgBouncer points at the destination (`RELOAD`).
 * The admin console speaks the simple query protocol only, and accepts few
 * startup parameters: this client sends none of kvsz's session settings.
 */
import postgres from "postgres";
import { parseConnInfo } from "../pg/conninfo.ts";
import { quoteIdent } from "../pg/identifiers.ts";

/** A connection to PgBouncer's admin console. */
interface PgBouncerAdmin {
  /** Runs one admin command (`PAUSE db`, `RESUME db`, `RELOAD`). */
  command(text: string): Promise<void>;
  end(): Promise<void>;
}

/** Opens PgBouncer's admin console at `url` (its database is `pgbouncer`). */
function pgbouncerAdmin(url: string): PgBouncerAdmin {
  const info = parseConnInfo(url);
  const sql = postgres({
    host: info.hosts[0].host,
    port: info.hosts[0].port,
    user: info.user ?? Deno.env.get("USER") ?? "postgres",
    pass: info.password ?? "",
    database: info.dbname ?? "pgbouncer",
    max: 1,
    prepare: false,
    fetch_types: false,
    connect_timeout: info.connectTimeout ?? 10,
    onnotice: () => {},
    connection: { application_name: "kvsz switchover" },
  });
  return {
    async command(text) {
      await sql.unsafe(text).simple();
    },
    end: () => sql.end({ timeout: 1 }),
  };
}

/**
 * Pauses `database` at PgBouncer: returns once no server connection of it is
 * left (every transaction in flight ended); true when it was already paused.
 * Fails after `timeoutSeconds` (a session-pooled client holds its server
 * connection until it disconnects), resuming what it paused.
 */
export async function pauseDatabase(
  url: string,
  database: string,
  timeoutSeconds: number,
): Promise<boolean> {
  const admin = pgbouncerAdmin(url);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("timeout")), timeoutSeconds * 1000);
  });
  try {
    await Promise.race([admin.command(`PAUSE ${quoteIdent(database)}`), expired]);
    return false;
  } catch (e) {
    const message = (e as Error).message;
    if (/already (suspended|paused)/i.test(message)) return true;
    if (message === "timeout") {
      await resumeDatabase(url, database).catch(() => {}); // on a session of its own

      throw new Error(
        `PgBouncer did not pause database ${database} within ${timeoutSeconds} s: a client holds ` +
          `its server connection (session pooling: PAUSE waits for it to disconnect; use ` +
          `pool_mode = transaction); resumed, nothing was fenced`,
      );
    }
    throw new Error(`PgBouncer refused PAUSE ${database}: ${message}`);
  } finally {
    clearTimeout(timer);
    await admin.end().catch(() => {});
  }
}

/** Resumes `database` at PgBouncer (after a `RELOAD` when `reload`); false when it was not paused. */
export async function resumeDatabase(
  url: string,
  database: string,
  opts: { reload?: boolean } = {},
): Promise<boolean> {
  const admin = pgbouncerAdmin(url);
  try {
    if (opts.reload) await admin.command("RELOAD");
    await admin.command(`RESUME ${quoteIdent(database)}`);
    return true;
  } catch (e) {
    if (/not paused|not suspended/i.test((e as Error).message)) return false;
    throw e;
  } finally {
    await admin.end().catch(() => {});
  }
}
