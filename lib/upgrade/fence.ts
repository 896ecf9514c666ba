/**
 * The write fence of a switchover, on the whole source database (every role,
 * not one): `ALTER DATABASE … SET default_transaction_read_only = on` makes
 * every new session read-only, then every client session opened before it is
 * ended (an open session keeps the default it started with, and a session
 * idle in transaction could still commit). kvsz's walsenders and the
 * switchover's own session are left alone. The database's setting is the
 * marker: a re-run and `--abort` read it back from `pg_db_role_setting`.
 */
import type { Sql } from "../pg/connect.ts";
import { quoteIdent, sqlName } from "../pg/identifiers.ts";
import { NeedsPersonError } from "../errors.ts";
import { parseConnInfo } from "../pg/conninfo.ts";

/** A fence that cannot be put up or lifted: the message says what to do. */
export class FenceError extends NeedsPersonError {}

/** What {@link fenceDatabase} did. */
export interface Fence {
  /** The database was already fenced (an interrupted switchover). */
  alreadyFenced: boolean;
  /** Client sessions ended. */
  sessionsEnded: number;
}

/** The source database's name on its server: the URL's (the config's `database` is kvsz's name for it). */
export function fencedDatabaseOf(url: string): string {
  const info = parseConnInfo(url);
  return info.dbname ?? info.user ?? Deno.env.get("USER") ?? "postgres";
}

/** Seconds to wait for ended sessions to go away. */
const SESSION_EXIT_SECONDS = 10;

/** True when the database's own setting makes its sessions read-only (the fence). */
export async function isFenced(sql: Sql, database: string): Promise<boolean> {
  const [row] = await sql.unsafe(
    `SELECT EXISTS (
       SELECT 1 FROM pg_catalog.pg_db_role_setting s
         JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
        CROSS JOIN LATERAL unnest(s.setconfig) c
        WHERE d.datname = $1 AND s.setrole = 0
          AND c ~* '^default_transaction_read_only=(on|true|yes|1)$') AS fenced`,
    [database],
  );
  return row.fenced;
}

/**
 * The GRANTs (or ALTERs) the connected role lacks to fence `database`, one
 * sentence each; empty when it can: owning the database (or superuser) for
 * ALTER DATABASE, pg_signal_backend (or superuser) for ending other roles'
 * sessions, and superuser for ending a superuser's session.
 */
export async function missingFencePrivileges(sql: Sql, database: string): Promise<string[]> {
  const [row] = await sql.unsafe(
    `SELECT current_user AS role, r.rolsuper AS superuser,
            pg_catalog.pg_get_userbyid(d.datdba) AS owner,
            pg_catalog.pg_has_role(current_user, d.datdba, 'MEMBER') AS owns,
            pg_catalog.pg_has_role(current_user, 'pg_signal_backend', 'MEMBER') AS signals,
            (SELECT count(*)::int FROM pg_catalog.pg_stat_activity a
               JOIN pg_catalog.pg_roles ar ON ar.oid = a.usesysid
              WHERE a.datname = d.datname AND ar.rolsuper AND a.pid <> pg_catalog.pg_backend_pid()
                AND a.backend_type = 'client backend') AS superuser_sessions
       FROM pg_catalog.pg_database d, pg_catalog.pg_roles r
      WHERE d.datname = $1 AND r.rolname = current_user`,
    [database],
  );
  if (!row) return [`database ${database} does not exist on the source`];
  if (row.superuser) return [];
  const role = sqlName(row.role);
  const missing: string[] = [];
  if (!row.owns) {
    missing.push(
      `role ${row.role} cannot ALTER DATABASE ${database} (it is owned by ${row.owner}): run ` +
        `"GRANT ${sqlName(row.owner)} TO ${role};" or "ALTER DATABASE ${
          sqlName(database)
        } OWNER TO ${role};", or connect as a superuser`,
    );
  }
  if (!row.signals) {
    missing.push(
      `role ${row.role} cannot end other roles' sessions: run "GRANT pg_signal_backend TO ${role};"`,
    );
  }
  if (row.superuser_sessions > 0) {
    missing.push(
      `${row.superuser_sessions} superuser session(s) are connected to ${database} and only a ` +
        `superuser can end them: end them first, or connect as a superuser`,
    );
  }
  return missing;
}

/**
 * Fences `database`: sets it read-only by default, then ends every other
 * client session that started before that (waiting until they are gone).
 * Idempotent: a re-run finds the setting on and ends what is left.
 */
export async function fenceDatabase(sql: Sql, database: string): Promise<Fence> {
  const alreadyFenced = await isFenced(sql, database);
  await sql.unsafe(
    `ALTER DATABASE ${quoteIdent(database)} SET default_transaction_read_only = on`,
  );
  // A session forked after this reads the setting; one forked before may not have.
  const [{ cutoff }] = await sql.unsafe(`SELECT clock_timestamp()::text AS cutoff`);
  const sessionsEnded = await endSessions(sql, database, cutoff);
  return { alreadyFenced, sessionsEnded };
}

/**
 * Lifts the fence: resets the database's default and ends the client
 * sessions opened while it was on (they started read-only and reconnect
 * read-write). Returns whether it was fenced and how many sessions ended.
 */
export async function unfenceDatabase(
  sql: Sql,
  database: string,
): Promise<{ wasFenced: boolean; sessionsEnded: number }> {
  const wasFenced = await isFenced(sql, database);
  if (!wasFenced) return { wasFenced, sessionsEnded: 0 };
  await sql.unsafe(`ALTER DATABASE ${quoteIdent(database)} RESET default_transaction_read_only`);
  const [{ cutoff }] = await sql.unsafe(`SELECT clock_timestamp()::text AS cutoff`);
  return { wasFenced, sessionsEnded: await endSessions(sql, database, cutoff) };
}

/**
 * Ends the client sessions of `database` that started before `cutoff`
 * (walsenders and this session excepted) and waits until they are gone;
 * returns how many there were.
 */
async function endSessions(sql: Sql, database: string, cutoff: string): Promise<number> {
  const select = `SELECT pid, usename FROM pg_catalog.pg_stat_activity
                   WHERE datname = $1 AND pid <> pg_catalog.pg_backend_pid()
                     AND backend_type = 'client backend' AND backend_start <= $2::timestamptz`;
  const ended = new Set<number>();
  const deadline = Date.now() + SESSION_EXIT_SECONDS * 1000;
  while (true) {
    const sessions = await sql.unsafe(select, [database, cutoff]);
    if (sessions.length === 0) return ended.size;
    if (Date.now() > deadline) {
      const list = sessions.map((s) => `${s.pid} (role ${s.usename})`).join(", ");
      throw new FenceError(
        `sessions ${list} of database ${database} did not end within ${SESSION_EXIT_SECONDS} s ` +
          `of pg_terminate_backend: end them (or find what holds them), then run again`,
      );
    }
    for (const s of sessions) {
      try {
        await sql.unsafe(`SELECT pg_catalog.pg_terminate_backend($1)`, [s.pid]);
        ended.add(s.pid);
      } catch (e) {
        throw new FenceError(
          `cannot end session ${s.pid} (role ${s.usename}) of database ${database}: ${
            (e as Error).message
          } — connect as a superuser, or end it yourself, then run again`,
        );
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Prepared transactions of `database` (their gids): one could commit after
 * the fence, so a switchover refuses until they are committed or rolled back.
 */
export async function preparedTransactions(sql: Sql, database: string): Promise<string[]> {
  const rows = await sql.unsafe(
    `SELECT gid FROM pg_catalog.pg_prepared_xacts WHERE database = $1 ORDER BY prepared`,
    [database],
  );
  return rows.map((r) => String(r.gid));
}
