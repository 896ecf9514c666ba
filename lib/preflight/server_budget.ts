/**
 * What kvsz will need on each source server, counted over all the sources it
 * holds, against what the server has free: replication slots
 * (`max_replication_slots`), WAL senders (`max_wal_senders`) and connections
 * (`max_connections` less the reserved ones). One check of each per server.
 */
import type { SyncConfig } from "../config/types.ts";
import { connect, SESSION_SETTINGS } from "../pg/connect.ts";
import { kvszObjectName } from "../pg/identifiers.ts";
import { parseConnInfo } from "../pg/conninfo.ts";
import { textArray } from "../apply/text_array.ts";
import { connectionProblem } from "../pg/describe.ts";
import type { Check, PreflightOptions } from "./check.ts";
import type { ConfiguredSource } from "./servers.ts";

/** One source server and the configured sources on it. */
export interface ServerSources {
  /** `host:port` (see `serverOf`). */
  server: string;
  sources: ConfiguredSource[];
  /** URL to read the server's settings with (a source that answered). */
  url: string;
}

/** What kvsz needs on a server, from the number of sources it holds there. */
export interface ServerNeeds {
  /** Slots to create: one per source without its slot yet. */
  slots: number;
  /** WAL senders: one replication connection per source, held while kvsz runs. */
  walSenders: number;
  /**
   * Normal connections: the initial copy's (at most `sync.parallelism`, and
   * no more than there are tables to copy) plus one for catalog reads; before
   * PostgreSQL 12 the replication connections count here too.
   */
  connections: number;
}

/** Counts what kvsz needs for `sources`, `existingSlots` of whose slots exist already. */
export function serverNeeds(
  sources: ConfiguredSource[],
  opts: { existingSlots: number; sync: Pick<SyncConfig, "parallelism">; major: number },
): ServerNeeds {
  const tables = sources.reduce((n, s) => n + s.db.tables.length, 0);
  const copy = Math.max(1, Math.min(opts.sync.parallelism, tables));
  return {
    slots: Math.max(0, sources.length - opts.existingSlots),
    walSenders: sources.length,
    connections: copy + 1 + (opts.major < 12 ? sources.length : 0),
  };
}

/** Options of {@link serverBudgetChecks}. */
export interface BudgetOptions extends PreflightOptions {
  /** `sync` of the config (its `parallelism` bounds the copy's connections). */
  sync: Pick<SyncConfig, "parallelism">;
}

/**
 * Checks that the server has the slots, WAL senders and connections kvsz
 * needs for all its sources; never throws. Run it when no other check holds
 * a connection there: what is in use counts against kvsz.
 */
export async function serverBudgetChecks(
  input: ServerSources,
  opts: BudgetOptions,
): Promise<Check[]> {
  const { server, sources, url } = input;
  const label = `source server ${server}`;
  const names = sources.map((s) => kvszObjectName(s.db.database, s.source.sid));
  const appNames = [...new Set(sources.map((s) => applicationName(s.source.url)))];
  const sql = connect(url, { connectTimeout: opts.connectTimeout ?? 5 });
  try {
    const [r] = await sql.unsafe(
      `SELECT current_setting('server_version_num')::int AS version_num,
              current_setting('max_replication_slots')::int AS max_slots,
              current_setting('max_wal_senders')::int AS max_wal_senders,
              current_setting('max_connections')::int AS max_connections,
              current_setting('superuser_reserved_connections')::int
                + coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved,
              (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) AS superuser,
              (SELECT count(*) FROM pg_catalog.pg_replication_slots)::int AS slots,
              (SELECT count(*) FROM pg_catalog.pg_replication_slots
                WHERE slot_name = ANY($1::text[]))::int AS own_slots,
              -- every role sees the rows of pg_stat_replication (not their details)
              (SELECT count(*) FROM pg_catalog.pg_stat_replication)::int AS senders,
              (SELECT count(*) FROM pg_catalog.pg_replication_slots
                WHERE slot_name = ANY($1::text[]) AND active)::int AS own_senders,
              (SELECT count(*) FROM pg_catalog.pg_stat_activity
                WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
                  AND NOT coalesce(application_name, '') = ANY($2::text[]))::int AS connections`,
      [textArray(names), textArray(appNames)],
    );
    const major = Math.floor(Number(r.version_num) / 10000);
    const needs = serverNeeds(sources, { existingSlots: r.own_slots, sync: opts.sync, major });
    const n = sources.length;
    const of = `${n} source${n === 1 ? "" : "s"}`;
    const restart = "then restart the server (or spread the sources over more servers)";
    const usable = r.max_connections - (r.superuser ? 0 : r.reserved);
    return [
      budgetCheck(`${label} replication slots`, {
        need: needs.slots,
        what: `replication slot`,
        why: `one per source without its slot: ${of}, ${r.own_slots} with theirs`,
        setting: "max_replication_slots",
        max: r.max_slots,
        used: r.slots,
        fix: `ALTER SYSTEM SET max_replication_slots = ${r.slots + needs.slots}; ${restart}, ` +
          "or drop unused slots with pg_drop_replication_slot(name)",
      }),
      budgetCheck(`${label} wal senders`, {
        need: needs.walSenders,
        what: "WAL sender",
        why: `one replication connection per source: ${of}`,
        setting: "max_wal_senders",
        max: r.max_wal_senders,
        used: r.senders - r.own_senders,
        fix: `ALTER SYSTEM SET max_wal_senders = ${
          r.senders - r.own_senders + needs.walSenders
        }; ${restart}`,
      }),
      budgetCheck(`${label} connections`, {
        need: needs.connections,
        what: "connection",
        why: `the initial copy's (sync.parallelism = ${opts.sync.parallelism}) and one for ` +
          `catalog reads${
            major < 12 ? `, and before PostgreSQL 12 the ${of}' replication ones` : ""
          }`,
        setting: r.superuser
          ? "max_connections"
          : "max_connections less superuser_reserved_connections and reserved_connections",
        max: usable,
        used: r.connections,
        fix: `ALTER SYSTEM SET max_connections = ${
          r.max_connections - usable + r.connections + needs.connections
        }; ${restart}, or lower sync.parallelism`,
      }),
    ];
  } catch (e) {
    return [{
      status: "FAIL",
      check: `${label} capacity`,
      problem: connectionProblem(e, url),
      fix: "check that the server is up and the role may read its settings",
    }];
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

/** One resource of a server: how many kvsz needs, against a setting's maximum and those in use. */
interface Budget {
  need: number;
  /** The resource, singular. */
  what: string;
  /** Why kvsz needs that many. */
  why: string;
  setting: string;
  max: number;
  /** In use by others. */
  used: number;
  fix: string;
}

function budgetCheck(check: string, b: Budget): Check {
  const free = Math.max(0, b.max - b.used);
  if (b.need <= free) return { status: "ok", check };
  const plural = (k: number) => `${k} ${b.what}${k === 1 ? "" : "s"}`;
  return {
    status: "FAIL",
    check,
    problem: `kvsz needs ${plural(b.need)} there (${b.why}), only ${free} free: ` +
      `${b.setting} = ${b.max}, ${b.used} in use by others`,
    fix: b.fix,
  };
}

/** The application_name kvsz connects with through `url` (its own connections are not others'). */
function applicationName(url: string): string {
  try {
    return parseConnInfo(url).applicationName ?? SESSION_SETTINGS.application_name;
  } catch {
    return SESSION_SETTINGS.application_name;
  }
}
