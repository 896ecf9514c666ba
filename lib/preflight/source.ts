/**
 * Read-only checks of one source connection before streaming: reachable,
 * `wal_level`, replication privilege and pg_hba, its slot, the publication,
 * and each mapped table (exists, readable, replica identity). Whether its
 * server has slots and WAL senders for every source is `server_budget.ts`.
 */
import type { DatabaseMapping, SourceUrl, TableMapping } from "../config/types.ts";
import { connect, type Sql } from "../pg/connect.ts";
import { kvszObjectName } from "../pg/identifiers.ts";
import { type QualifiedName, readSourceTable, type SourceTable } from "../source/catalog.ts";
import { partitionsPublicationName } from "../source/publication.ts";
import { noMatch, regexMatches } from "../source/tables.ts";
import { connectionFix, connectionProblem, describeUrl } from "../pg/describe.ts";
import { sqlName, sqlQualified } from "../pg/identifiers.ts";
import { type Check, type PreflightOptions } from "./check.ts";
import { transformCheck } from "./transforms.ts";
import { pgErrorFields } from "../pg/errors.ts";
import { serverOf } from "../pg/conninfo.ts";

/** What {@link preflightSource} found. */
export interface SourcePreflight {
  checks: Check[];
  /** True when a normal connection could be opened. */
  reachable: boolean;
  /**
   * The source table whose columns a mapping's target is compared with, by
   * `TableMapping.source`: the mapped table, or with `partitions_regex` and no
   * such table, the first matching one; null when there is none.
   */
  tables: Map<string, SourceTable | null>;
}

/** How a source connection is named in checks: `source db1 sid 12 (host:5432/db1)`. */
export function sourceLabel(database: string, sid: string, url: string): string {
  return `source ${database} sid ${sid} (${describeUrl(url)})`;
}

interface ServerFacts {
  user: string;
  database: string;
  walLevel: string;
  maxWalSenders: number;
  superuser: boolean;
  replication: boolean;
  clientAddr: string | null;
  major: number;
  canCreate: boolean;
}

async function serverFacts(sql: Sql): Promise<ServerFacts> {
  const [r] = await sql.unsafe(
    `SELECT current_user AS "user", current_database() AS database,
            current_setting('wal_level') AS wal_level,
            current_setting('max_wal_senders')::int AS max_wal_senders,
            r.rolsuper AS superuser, r.rolreplication AS replication,
            host(inet_client_addr()) AS client_addr,
            current_setting('server_version_num')::int AS version_num,
            has_database_privilege(current_database(), 'CREATE') AS can_create
       FROM pg_catalog.pg_roles r WHERE r.rolname = current_user`,
  );
  return {
    user: r.user,
    database: r.database,
    walLevel: r.wal_level,
    maxWalSenders: Number(r.max_wal_senders),
    superuser: r.superuser,
    replication: r.replication,
    clientAddr: r.client_addr ?? null,
    major: Math.floor(Number(r.version_num) / 10000),
    canCreate: r.can_create,
  };
}

/** The tables of a mapping as found on the source (resolved the way `kvsz run` resolves them). */
interface MappedTables {
  mapping: TableMapping;
  /** The mapped table itself (null when missing). */
  table: SourceTable | null;
  /** Tables matching `partitions_regex` (empty without it). */
  matches: QualifiedName[];
  /** Table compared with the target: `table`, else the first match read in full. */
  representative: SourceTable | null;
  /** Tables in the publication: the matches with `partitions_regex`, else the table (its leaves on PG12). */
  published: QualifiedName[];
  /** Tables read by the initial copy: the matches with `partitions_regex`, else the table. */
  copied: QualifiedName[];
  /** The partitioned table in the partitions publication (see `ResolvedTable.leavesOf`). */
  leavesOf: QualifiedName | null;
}

async function readMapping(
  sql: Sql,
  mapping: TableMapping,
  major: number,
): Promise<MappedTables> {
  const table = await readSourceTable(sql, mapping.sourceSchema, mapping.sourceName);
  const { matches, leavesOf } = mapping.partitionsRegex
    ? await regexMatches(sql, mapping, { table, major })
    : { matches: [], leavesOf: null };
  let representative = table;
  if (!representative && matches.length > 0) {
    representative = await readSourceTable(sql, matches[0].schema, matches[0].name);
  }
  if (mapping.partitionsRegex) {
    const published = leavesOf ? [] : matches;
    return { mapping, table, matches, representative, published, copied: matches, leavesOf };
  }
  const self = table ? [{ schema: table.schema, name: table.name }] : [];
  const published = table?.kind === "partitioned" && major < 13 ? table.leafPartitions : self;
  return { mapping, table, matches, representative, published, copied: self, leavesOf };
}

/** Runs every read-only check of source `url` of database `db`; never throws. */
export async function preflightSource(
  db: DatabaseMapping,
  source: SourceUrl,
  opts: PreflightOptions = {},
): Promise<SourcePreflight> {
  const result = await checkSource(db, source, opts);
  const about = {
    database: db.database,
    sid: source.sid,
    server: serverOf(source.url),
    endpoint: describeUrl(source.url),
  };
  for (const c of result.checks) c.source = about;
  return result;
}

async function checkSource(
  db: DatabaseMapping,
  source: SourceUrl,
  opts: PreflightOptions,
): Promise<SourcePreflight> {
  const label = sourceLabel(db.database, source.sid, source.url);
  const checks: Check[] = [];
  const tables = new Map<string, SourceTable | null>();
  const timeout = opts.connectTimeout ?? 5;
  const sql = connect(source.url, { connectTimeout: timeout });
  try {
    let facts: ServerFacts;
    try {
      facts = await serverFacts(sql);
    } catch (e) {
      checks.push({
        status: "FAIL",
        check: `${label} reachable`,
        problem: connectionProblem(e, source.url),
        fix: connectionFix(e, source.url),
      });
      return { checks, reachable: false, tables };
    }
    checks.push({ status: "ok", check: `${label} reachable` });
    checks.push(walLevelCheck(label, facts));
    const mayReplicate = facts.superuser || facts.replication;
    checks.push(
      mayReplicate ? { status: "ok", check: `${label} role ${facts.user} may replicate` } : {
        status: "FAIL",
        check: `${label} role ${facts.user} may replicate`,
        problem: `role ${facts.user} has neither REPLICATION nor SUPERUSER`,
        fix: `ALTER ROLE ${sqlName(facts.user)} REPLICATION;`,
      },
    );
    const slotName = kvszObjectName(db.database, source.sid);
    const slots = await slotChecks(sql, label, { slotName, facts, db });
    // The replication connection and the table reads run at once (the table
    // queries pipelined on one connection); the checks keep their order.
    const limit = opts.replicationLimiter ?? ((fn) => fn());
    const replication = mayReplicate
      ? limit(() =>
        replicationConnectionCheck(label, source.url, { facts, connectTimeout: timeout })
      )
      : null;
    const perTable = await Promise.all(db.tables.map(async (mapping) => {
      const m = await readMapping(sql, mapping, facts.major);
      return { m, checks: await tableChecks(sql, label, { facts, m }) };
    }));
    if (replication) checks.push(await replication);
    checks.push(...slots);
    if (source.failover) checks.push(...await failoverChecks(sql, label, facts));

    const mapped: MappedTables[] = [];
    for (const { m, checks: tableResults } of perTable) {
      mapped.push(m);
      tables.set(m.mapping.source, m.representative);
      checks.push(...tableResults);
      const expressions = transformCheck(label, {
        mapping: m.mapping,
        table: m.representative,
        database: db.database,
        sid: source.sid,
      });
      if (expressions) checks.push(expressions);
    }
    const partitioned = mapped.some((m) => m.table?.kind === "partitioned") && facts.major >= 13;
    const published = mapped.flatMap((m) => m.published);
    checks.push(
      await publicationCheck(sql, label, {
        name: slotName,
        facts,
        wanted: published,
        viaRoot: partitioned,
      }),
    );
    const leaves = mapped.flatMap((m) => m.leavesOf ?? []);
    if (leaves.length > 0) {
      const name = partitionsPublicationName(slotName);
      checks.push(
        await publicationCheck(sql, label, { name, facts, wanted: leaves, viaRoot: false }),
      );
    }
    return { checks, reachable: true, tables };
  } catch (e) {
    checks.push({
      status: "FAIL",
      check: `${label} catalog`,
      problem: connectionProblem(e, source.url),
      fix: "check that the server is up and the role may read the catalog",
    });
    return { checks, reachable: true, tables };
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

function walLevelCheck(label: string, facts: ServerFacts): Check {
  const check = `${label} wal_level`;
  if (facts.walLevel === "logical") return { status: "ok", check };
  return {
    status: "FAIL",
    check,
    problem: `wal_level is ${facts.walLevel}; logical replication needs logical`,
    fix: "ALTER SYSTEM SET wal_level = logical; then restart the server",
  };
}

/** Options of {@link replicationConnectionCheck}. */
interface ReplicationCheckOptions {
  /** What the normal connection read (for the pg_hba.conf line and max_wal_senders). */
  facts: ServerFacts;
  /** Seconds to wait for the connection. */
  connectTimeout: number;
}

async function replicationConnectionCheck(
  label: string,
  url: string,
  opts: ReplicationCheckOptions,
): Promise<Check> {
  const { facts, connectTimeout } = opts;
  const check = `${label} replication connection`;
  const repl = connect(url, { replication: true, connectTimeout });
  try {
    await repl.unsafe("IDENTIFY_SYSTEM");
    return { status: "ok", check };
  } catch (e) {
    const err = pgErrorFields(e);
    const problem = connectionProblem(e, url);
    if (err.code === "28000" && /pg_hba/.test(err.message ?? "")) {
      // A logical replication connection is matched like a normal one, by database name.
      const line = facts.clientAddr
        ? `host ${facts.database} ${facts.user} ${facts.clientAddr}/${
          facts.clientAddr.includes(":") ? 128 : 32
        } scram-sha-256`
        : `local ${facts.database} ${facts.user} scram-sha-256`;
      return {
        status: "FAIL",
        check,
        problem,
        fix: `add "${line}" to pg_hba.conf, then SELECT pg_reload_conf();`,
      };
    }
    if (/max_wal_senders/.test(err.message ?? "")) {
      return {
        status: "FAIL",
        check,
        problem,
        fix: `ALTER SYSTEM SET max_wal_senders = ${
          facts.maxWalSenders + 1
        }; then restart the server`,
      };
    }
    if (/unsupported startup parameter/i.test(err.message ?? "")) {
      return {
        status: "FAIL",
        check,
        problem,
        fix:
          "connect kvsz straight to PostgreSQL: connection poolers do not pass replication connections",
      };
    }
    return { status: "FAIL", check, problem, fix: connectionFix(e, url) };
  } finally {
    await repl.end({ timeout: 1 }).catch(() => {});
  }
}

/** What {@link slotChecks} looks at. */
interface SlotCheckInput {
  /** The source's slot (and publication) name. */
  slotName: string;
  /** The server's settings and the role's rights. */
  facts: ServerFacts;
  /** The source database's mapping. */
  db: DatabaseMapping;
}

/** The source's slot, if it exists, is kvsz's; other kvsz slots of its database are used. */
async function slotChecks(sql: Sql, label: string, input: SlotCheckInput): Promise<Check[]> {
  const { slotName, facts, db } = input;
  const [mine] = await sql.unsafe(
    `SELECT plugin, database, active, active_pid FROM pg_catalog.pg_replication_slots
      WHERE slot_name = $1`,
    [slotName],
  );
  const out: Check[] = [];
  const slotCheck = `${label} replication slot ${slotName}`;
  if (mine) {
    if (mine.plugin !== "pgoutput" || mine.database !== facts.database) {
      out.push({
        status: "FAIL",
        check: slotCheck,
        problem: `a slot of that name exists for plugin ${mine.plugin ?? "none"} in database ${
          mine.database ?? "none"
        }; kvsz needs a pgoutput slot in ${facts.database}`,
        fix: `SELECT pg_drop_replication_slot('${slotName}'); (kvsz creates it again)`,
      });
    } else {
      out.push({ status: "ok", check: slotCheck });
    }
  } else {
    out.push({ status: "ok", check: slotCheck });
  }
  // Forgotten kvsz slots of this database retain WAL until they are dropped.
  const configured = new Set(db.urls.map((u) => kvszObjectName(db.database, u.sid)));
  const others = await sql.unsafe(
    `SELECT slot_name, active FROM pg_catalog.pg_replication_slots
      WHERE database = current_database() AND slot_name LIKE 'kvsz\\_%' AND NOT temporary`,
  );
  for (const other of others) {
    if (configured.has(other.slot_name) || other.active) continue;
    out.push({
      status: "WARN",
      check: `${label} unused slot ${other.slot_name}`,
      problem:
        `kvsz slot ${other.slot_name} is not used by this config and retains WAL on the source`,
      fix: `if no other kvsz uses it: SELECT pg_drop_replication_slot('${other.slot_name}');`,
    });
  }
  return out;
}

/**
 * `failover: true`: the source is PostgreSQL 17+ and a primary, and each
 * standby's physical slot is listed in `synchronized_standby_slots`, so that
 * kvsz never gets ahead of the standby that may take over.
 */
async function failoverChecks(sql: Sql, label: string, facts: ServerFacts): Promise<Check[]> {
  const check = `${label} failover`;
  if (facts.major < 17) {
    return [{
      status: "FAIL",
      check,
      problem: `failover: true needs PostgreSQL 17 or later; the source is ${facts.major}`,
      fix: "remove failover from the source's entry, or upgrade the source",
    }];
  }
  const [r] = await sql.unsafe(
    `SELECT pg_catalog.pg_is_in_recovery() AS standby,
            current_setting('synchronized_standby_slots') AS listed,
            (SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_catalog.pg_replication_slots
              WHERE slot_type = 'physical' AND NOT temporary) AS physical`,
  );
  if (r.standby) {
    return [{
      status: "FAIL",
      check,
      problem:
        "the URL leads to a standby: a slot synchronized to standbys is created on the primary",
      fix:
        "list every host in the URL with ?target_session_attrs=read-write (see README, Failover)",
    }];
  }
  // Slot names are [a-z0-9_]: a comma splits them.
  const names = (text: string | null) =>
    (text ?? "").split(",").map((n) => n.trim().replace(/^"|"$/g, "")).filter((n) => n !== "");
  const listed = names(r.listed);
  const physical = names(r.physical);
  const out: Check[] = [];
  for (const name of listed.filter((n) => !physical.includes(n))) {
    out.push({
      status: "FAIL",
      check: `${check}: synchronized_standby_slots`,
      problem: `it names ${name}, which is not a physical replication slot of the source: ` +
        `the source sends kvsz nothing while it waits for that slot`,
      fix: `create the standby's slot (SELECT pg_create_physical_replication_slot('${name}');) ` +
        `or remove it from synchronized_standby_slots, then SELECT pg_reload_conf();`,
    });
  }
  if (physical.length === 0) {
    out.push({
      status: "WARN",
      check,
      problem: "no physical replication slot on the source: no standby has kvsz's slot " +
        "synchronized to it, so after a failover kvsz copies every table again",
      fix: "give each standby a physical slot (primary_slot_name), hot_standby_feedback = on, " +
        "sync_replication_slots = on and a dbname in primary_conninfo (see README, Failover)",
    });
  }
  const unlisted = physical.filter((n) => !listed.includes(n));
  for (const name of unlisted) {
    out.push({
      status: "WARN",
      check: `${check}: standby slot ${name}`,
      problem: `physical slot ${name} is not listed in synchronized_standby_slots: kvsz may ` +
        `receive and apply changes that standby has not received yet, so its copy of kvsz's ` +
        `slot can lag behind what kvsz confirmed; promoted, it lacks those changes`,
      fix: `ALTER SYSTEM SET synchronized_standby_slots = '${
        [...listed, ...unlisted].join(", ")
      }'; SELECT pg_reload_conf();`,
    });
  }
  if (out.length === 0) out.push({ status: "ok", check });
  return out;
}

/** What {@link tableChecks} looks at. */
interface TableCheckInput {
  /** The server's settings and the role's rights. */
  facts: ServerFacts;
  /** The mapping and the tables it names. */
  m: MappedTables;
}

async function tableChecks(sql: Sql, label: string, input: TableCheckInput): Promise<Check[]> {
  const { facts, m } = input;
  const { mapping } = m;
  const name = `${mapping.sourceSchema}.${mapping.sourceName}`;
  const check = `${label} table ${name}`;
  const out: Check[] = [];
  if (mapping.partitionsRegex) {
    if (m.matches.length === 0) {
      return [{
        status: "FAIL",
        check,
        problem: noMatch(mapping, m.leavesOf),
        fix: m.leavesOf
          ? `correct partitions_regex (matched against the whole names of the partitions of ${name})`
          : "correct partitions_regex (matched against whole table names) or the schema",
      }];
    }
  } else if (!m.table) {
    return [{
      status: "FAIL",
      check,
      problem: `no table ${name} in database ${facts.database}`,
      fix: `create it, or correct the table name (write "schema.table" when not in public)`,
    }];
  }

  const unreadable: string[] = [];
  for (const t of m.copied) {
    const [p] = await sql.unsafe(
      `SELECT has_table_privilege(c.oid, 'SELECT') AS ok
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = $2`,
      [t.schema, t.name],
    );
    if (p && !p.ok) unreadable.push(sqlQualified(t.schema, t.name));
  }
  if (unreadable.length > 0) {
    out.push({
      status: "FAIL",
      check,
      problem: `role ${facts.user} may not SELECT from ${unreadable.join(", ")}`,
      fix: `GRANT SELECT ON ${unreadable.join(", ")} TO ${sqlName(facts.user)};`,
    });
  } else {
    out.push({ status: "ok", check });
  }
  out.push(...await identityChecks(sql, label, m));
  return out;
}

/** Tables whose replica identity decides whether UPDATE and DELETE are allowed once published. */
async function identityChecks(sql: Sql, label: string, m: MappedTables): Promise<Check[]> {
  let leaves: SourceTable[] = [];
  if (m.mapping.partitionsRegex || m.table?.kind !== "table") {
    const names = m.mapping.partitionsRegex ? m.matches : m.table?.leafPartitions ?? [];
    for (const n of names) {
      const t = await readSourceTable(sql, n.schema, n.name);
      if (t) leaves.push(t);
    }
  } else {
    leaves = [m.table];
  }
  const check = `${label} table ${m.mapping.sourceSchema}.${m.mapping.sourceName} replica identity`;
  const out: Check[] = [];
  for (const t of leaves) {
    const noKey = t.replicaIdentity === "n" ||
      (t.replicaIdentity === "d" && t.primaryKey.length === 0);
    if (!noKey) continue;
    const what = t.replicaIdentity === "n"
      ? "is NOTHING"
      : "is DEFAULT but there is no primary key";
    const q = sqlQualified(t.schema, t.name);
    out.push({
      status: "WARN",
      check: leaves.length > 1 || t.name !== m.mapping.sourceName ? `${check} (${q})` : check,
      problem:
        `replica identity of ${q} ${what}: inserts flow, but the source refuses its UPDATE and DELETE once published`,
      fix: `add a primary key, or ALTER TABLE ${q} REPLICA IDENTITY FULL;`,
    });
  }
  if (out.length === 0 && leaves.length > 0) out.push({ status: "ok", check });
  return out;
}

/** What {@link publicationCheck} looks at. */
interface PublicationCheckInput {
  /** The publication. */
  name: string;
  /** The server's settings and the role's rights. */
  facts: ServerFacts;
  /** The tables it must publish. */
  wanted: QualifiedName[];
  /** Its WITH option `publish_via_partition_root`, for the CREATE in the fix. */
  viaRoot: boolean;
}

/** Publication `name` publishes `wanted`, or the role may make it so. */
async function publicationCheck(
  sql: Sql,
  label: string,
  input: PublicationCheckInput,
): Promise<Check> {
  const { name, facts, wanted, viaRoot } = input;
  const check = `${label} publication ${name}`;
  const [pub] = await sql.unsafe(
    `SELECT p.oid::int8 AS oid, pg_has_role(p.pubowner, 'USAGE') AS owned
       FROM pg_catalog.pg_publication p WHERE p.pubname = $1`,
    [name],
  );
  const missing: QualifiedName[] = [];
  const notOwned: QualifiedName[] = [];
  for (const t of wanted) {
    const [r] = await sql.unsafe(
      `SELECT pg_has_role(c.relowner, 'USAGE') AS owned,
              ${
        pub
          ? `EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables pt
                       JOIN pg_catalog.pg_namespace pn ON pn.nspname = pt.schemaname
                       JOIN pg_catalog.pg_class pc ON pc.relnamespace = pn.oid
                                                  AND pc.relname = pt.tablename
                      WHERE pt.pubname = $3
                        AND (pc.oid = c.oid
                          OR pc.oid IN (SELECT relid FROM pg_partition_tree(c.oid))
                          OR pc.oid IN (SELECT relid FROM pg_partition_ancestors(c.oid))))`
          : "false"
      } AS published
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = $2`,
      pub ? [t.schema, t.name, name] : [t.schema, t.name],
    );
    if (!r) continue;
    if (!r.published) missing.push(t);
    if (!r.owned) notOwned.push(t);
  }
  const list = (ts: QualifiedName[]) => ts.map((t) => sqlQualified(t.schema, t.name)).join(", ");
  const asOwner = "as the tables' owner or a superuser";
  if (pub) {
    const cannotAdd = missing.filter((t) =>
      !facts.superuser && (!pub.owned || notOwned.includes(t))
    );
    if (cannotAdd.length === 0) return { status: "ok", check };
    return {
      status: "FAIL",
      check,
      problem: `the publication lacks ${list(cannotAdd)} and role ${facts.user} cannot add ${
        cannotAdd.length > 1 ? "them" : "it"
      } (it must own the publication and the table)`,
      fix: `${asOwner}: ALTER PUBLICATION ${sqlName(name)} ADD TABLE ${list(cannotAdd)};`,
    };
  }
  if (facts.superuser || (facts.canCreate && notOwned.length === 0)) {
    return { status: "ok", check };
  }
  const reasons = [
    ...(facts.canCreate ? [] : [`CREATE on database ${facts.database}`]),
    ...(notOwned.length > 0 ? [`ownership of ${list(notOwned)}`] : []),
  ];
  const via = viaRoot ? " WITH (publish_via_partition_root = true)" : "";
  return {
    status: "FAIL",
    check,
    problem: `the publication does not exist and role ${facts.user} cannot create it (it needs ${
      reasons.join(" and ")
    })`,
    fix: `${asOwner}: CREATE PUBLICATION ${sqlName(name)}${
      wanted.length > 0 ? ` FOR TABLE ${list(wanted)}` : ""
    }${via};`,
  };
}
