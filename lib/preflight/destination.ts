/**
 * Read-only checks of the destination before streaming: reachable, schema
 * `kvsz` can be created, and each target table exists with the privileges, the
 * history columns, the column types and the key columns its sources need.
 */
import {
  type Config,
  type DatabaseMapping,
  type TableMapping,
  type TableMode,
  targetKey,
  targetSchemaOf,
} from "../config/types.ts";
import { connect, type Sql } from "../pg/connect.ts";
import type { SourceTable } from "../source/catalog.ts";
import { HISTORY_COLUMNS, KVSZ_COLUMNS, readTargetTable, SID_COLUMN } from "../apply/catalog.ts";
import type { TargetTable } from "../apply/types.ts";
import { compareColumns, driftNotice } from "../apply/drift.ts";
import { readAllSyncedTables, type SyncedTableRow } from "../apply/progress.ts";
import { type Check, type PreflightOptions } from "./check.ts";
import { connectionFix, connectionProblem, describeUrl } from "../pg/describe.ts";
import { sqlName } from "../pg/identifiers.ts";

/** Type every history column must have, as `format_type` prints it. */
export const HISTORY_COLUMN_TYPES: Record<string, string> = {
  kvsz_start: "timestamp with time zone",
  kvsz_end: "timestamp with time zone",
  kvsz_deleted: "boolean",
};

const HISTORY_DDL: Record<string, string> = {
  kvsz_start: "timestamptz",
  kvsz_end: "timestamptz",
  kvsz_deleted: "boolean",
};

/**
 * Source tables read by the source checks: by database name, then by
 * `TableMapping.source`; a database missing here was unreachable.
 */
export type SourceTables = Map<string, Map<string, SourceTable | null>>;

/** How the destination is named in checks: `destination (host:5432/db)`. */
export function destinationLabel(url: string): string {
  return `destination (${describeUrl(url)})`;
}

/**
 * Runs every read-only check of the destination; never throws. Its own reads
 * (one connection, pipelined) run while `sources` is still being read; only
 * the comparisons with the source tables wait for it.
 */
export async function preflightDestination(
  config: Config,
  sources: SourceTables | Promise<SourceTables>,
  opts: PreflightOptions = {},
): Promise<Check[]> {
  const url = config.destination.url;
  const label = destinationLabel(url);
  const sql = connect(url, { connectTimeout: opts.connectTimeout ?? 5 });
  const checks: Check[] = [];
  try {
    let user: string;
    try {
      const [r] = await sql.unsafe(`SELECT current_user AS "user"`);
      user = r.user;
    } catch (e) {
      return [{
        status: "FAIL",
        check: `${label} reachable`,
        problem: connectionProblem(e, url),
        fix: connectionFix(e, url),
      }];
    }
    checks.push({ status: "ok", check: `${label} reachable` });
    const schema = config.destination.schema;
    const mapped = new Map(
      config.databases.flatMap((db) => db.tables.map((m) => [targetKey(m), m])),
    );
    const [kvszSchema, targetSchema, targetList, records] = await Promise.all([
      kvszSchemaCheck(sql, label, user),
      targetSchemaCheck(sql, label, { schema, user, create: config.destination.createTables }),
      Promise.all(
        [...mapped.values()].map((m) => readTargetTable(sql, targetSchemaOf(m, schema), m.target)),
      ),
      readColumnRecords(sql),
    ]);
    checks.push(kvszSchema, targetSchema);
    if (config.destination.replicaRole) checks.push(await replicaRoleCheck(sql, label, user));
    const targets = new Map([...mapped.keys()].map((key, i) => [key, targetList[i]]));
    const sourceTables = await sources;
    const perMapping = await Promise.all(
      config.databases.flatMap((db) =>
        db.tables.map((mapping) =>
          targetChecks(sql, label, {
            schema: targetSchemaOf(mapping, schema),
            destinationSchema: schema,
            user,
            db,
            mapping,
            target: targets.get(targetKey(mapping)) ?? null,
            source: sourceTables.get(db.database)?.get(mapping.source) ?? null,
            replicaRole: config.destination.replicaRole,
            createTables: config.destination.createTables,
            records: db.urls.flatMap((u) =>
              records.get(recordKey(db.database, u.sid, mapping.source)) ?? []
            ),
          })
        )
      ),
    );
    checks.push(...perMapping.flat());
    return checks;
  } catch (e) {
    checks.push({
      status: "FAIL",
      check: `${label} catalog`,
      problem: connectionProblem(e, url),
      fix: "check that the server is up and the role may read the catalog",
    });
    return checks;
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

/** `destination.replica_role` needs the right to set session_replication_role. */
async function replicaRoleCheck(sql: Sql, label: string, user: string): Promise<Check> {
  const check = `${label} replica_role`;
  try {
    // Local to this statement's own transaction: nothing stays set.
    await sql.unsafe(`SELECT set_config('session_replication_role', 'replica', true)`);
    return { status: "ok", check };
  } catch (e) {
    return {
      status: "FAIL",
      check,
      problem:
        `destination.replica_role is on, but role ${user} may not set session_replication_role (${
          (e as Error).message
        })`,
      fix: `GRANT SET ON PARAMETER session_replication_role TO ${
        sqlName(user)
      }; (PostgreSQL 15+; before, a superuser) or set destination.replica_role: false`,
    };
  }
}

async function kvszSchemaCheck(sql: Sql, label: string, user: string): Promise<Check> {
  const check = `${label} schema kvsz`;
  const [r] = await sql.unsafe(
    `SELECT current_database() AS database,
            has_database_privilege(current_database(), 'CREATE') AS can_create,
            n.oid IS NOT NULL AS present,
            CASE WHEN n.oid IS NOT NULL
                 THEN has_schema_privilege(n.oid, 'USAGE') AND has_schema_privilege(n.oid, 'CREATE')
            END AS usable
       FROM (SELECT 1) one
       LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = 'kvsz'`,
  );
  if (r.present) {
    if (r.usable) return { status: "ok", check };
    return {
      status: "FAIL",
      check,
      problem: `schema kvsz exists but role ${user} lacks USAGE or CREATE on it`,
      fix: `GRANT USAGE, CREATE ON SCHEMA kvsz TO ${sqlName(user)};`,
    };
  }
  if (r.can_create) return { status: "ok", check };
  return {
    status: "FAIL",
    check,
    problem:
      `kvsz keeps its progress in schema kvsz, which does not exist, and role ${user} may not create schemas in database ${r.database}`,
    fix: `CREATE SCHEMA kvsz AUTHORIZATION ${sqlName(user)}; or GRANT CREATE ON DATABASE ${
      sqlName(r.database)
    } TO ${sqlName(user)};`,
  };
}

/** What {@link targetSchemaCheck} checks. */
interface SchemaCheckInput {
  /** `destination.schema`. */
  schema: string;
  /** The role kvsz connects as. */
  user: string;
  /** `destination.create_tables`: a missing schema is created by `kvsz run`. */
  create: boolean;
}

/** Checks that `destination.schema` exists and the role may use it. */
async function targetSchemaCheck(
  sql: Sql,
  label: string,
  input: SchemaCheckInput,
): Promise<Check> {
  const { schema, user, create } = input;
  const check = `${label} schema ${schema}`;
  const [r] = await sql.unsafe(
    `SELECT n.oid IS NOT NULL AS present,
            CASE WHEN n.oid IS NOT NULL THEN has_schema_privilege(n.oid, 'USAGE') END AS usable
       FROM (SELECT 1) one LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = $1`,
    [schema],
  );
  if (!r.present && create) {
    return {
      status: "WARN",
      check,
      problem: `schema ${schema} (destination.schema) does not exist: kvsz run will create it`,
      fix: "nothing to do (destination.create_tables is on)",
    };
  }
  if (!r.present) {
    return {
      status: "FAIL",
      check,
      problem: `schema ${schema} (destination.schema) does not exist`,
      fix: `CREATE SCHEMA ${sqlName(schema)}; or correct destination.schema`,
    };
  }
  if (!r.usable) {
    return {
      status: "FAIL",
      check,
      problem: `role ${user} lacks USAGE on schema ${schema}`,
      fix: `GRANT USAGE ON SCHEMA ${sqlName(schema)} TO ${sqlName(user)};`,
    };
  }
  return { status: "ok", check };
}

/** Privileges a target needs for `mode`. */
function neededPrivileges(mapping: TableMapping): string[] {
  return mapping.mode === "clone"
    ? ["INSERT", "UPDATE", "DELETE", "TRUNCATE"]
    : ["INSERT", "UPDATE"];
}

function recordKey(database: string, sid: string, sourceTable: string): string {
  return JSON.stringify([database, sid, sourceTable]);
}

/** kvsz's records of the tables by {@link recordKey}; empty before kvsz first ran. */
async function readColumnRecords(sql: Sql): Promise<Map<string, SyncedTableRow>> {
  const rows = await readAllSyncedTables(sql);
  return new Map(rows.map((r) => [recordKey(r.database, r.sid, r.sourceTable), r]));
}

/** What the checks of one mapping's target look at. */
interface TargetCheckInput {
  /** The target's schema. */
  schema: string;
  /** `destination.schema`: the schema of targets that name none. */
  destinationSchema: string;
  user: string;
  db: DatabaseMapping;
  mapping: TableMapping;
  target: TargetTable | null;
  source: SourceTable | null;
  /** `destination.replica_role`: foreign keys do not fire. */
  replicaRole: boolean;
  /** `destination.create_tables`: a missing target is created by `kvsz run`. */
  createTables: boolean;
  /** kvsz's records of the table, one per sid that has one. */
  records: SyncedTableRow[];
}

async function targetChecks(
  sql: Sql,
  destLabel: string,
  input: TargetCheckInput,
): Promise<Check[]> {
  const { schema, destinationSchema, user, db, mapping, target, source, replicaRole } = input;
  const qualified = `${sqlName(schema)}.${sqlName(mapping.target)}`;
  const label =
    `${destLabel} table ${schema}.${mapping.target} (from ${db.database} ${mapping.sourceSchema}.${mapping.sourceName}, ${mapping.mode})`;
  const multi = db.urls.length > 1;
  if (!target && input.createTables) {
    return [{
      status: "WARN",
      check: label,
      problem: `table ${schema}.${mapping.target} does not exist: kvsz run will create it`,
      fix: "nothing to do (destination.create_tables is on)",
    }];
  }
  if (!target) {
    return [{
      status: "FAIL",
      check: label,
      problem: `table ${schema}.${mapping.target} does not exist`,
      fix: source
        ? createTableHint(qualified, source, { mode: mapping.mode, withSid: multi })
        : `create ${qualified} with the columns of ${mapping.source} you want${
          multi ? ", a sid text column" : ""
        }${mapping.mode === "history" ? " and kvsz_start, kvsz_end, kvsz_deleted" : ""}`,
    }];
  }
  const out: Check[] = [];
  const needed = neededPrivileges(mapping);
  const [priv] = await sql.unsafe(
    `SELECT ${
      needed.map((p, i) => `has_table_privilege($1::regclass, '${p}') AS p${i}`).join(", ")
    }`,
    [qualified],
  );
  const lacking = needed.filter((_, i) => !priv[`p${i}`]);
  out.push(
    lacking.length === 0 ? { status: "ok", check: label } : {
      status: "FAIL",
      check: label,
      problem: `role ${user} lacks ${lacking.join(", ")} on ${qualified}`,
      fix: `GRANT ${lacking.join(", ")} ON ${qualified} TO ${sqlName(user)};`,
    },
  );

  if (mapping.mode === "history") out.push(historyCheck(label, qualified, target));
  if (!replicaRole) {
    out.push(...foreignKeyChecks(label, qualified, { schema: destinationSchema, db, target }));
  }
  if (multi && !target.hasSid) {
    out.push({
      status: "WARN",
      check: `${label} sid`,
      problem:
        `${db.urls.length} sources of ${db.database} share ${qualified} without a ${SID_COLUMN} column: their rows can collide`,
      fix: `ALTER TABLE ${qualified} ADD COLUMN sid text; and put sid in its primary key`,
    });
  }
  if (!source) return out;

  const common = source.columns.filter((c) =>
    target.columns.has(c.name) && !KVSZ_COLUMNS.has(c.name)
  );
  const typeCheck = `${label} column types`;
  if (common.length === 0) {
    out.push({
      status: "WARN",
      check: typeCheck,
      problem: `no column in common with ${source.schema}.${source.name}: nothing but sid${
        mapping.mode === "history" ? " and kvsz_*" : ""
      } would be written`,
      fix: `add the source columns you need to ${qualified} (same names and types)`,
    });
  } else {
    const mismatches = common.filter((c) => target.columns.get(c.name)!.type !== c.type);
    for (const c of mismatches) {
      const t = target.columns.get(c.name)!;
      out.push({
        status: "FAIL",
        check: typeCheck,
        problem:
          `column ${c.name} is ${t.type} here but ${c.type} in ${db.database} ${source.schema}.${source.name}`,
        fix: `ALTER TABLE ${qualified} ALTER COLUMN ${sqlName(c.name)} TYPE ${c.type};`,
      });
    }
    if (mismatches.length === 0) out.push({ status: "ok", check: typeCheck });
  }

  out.push(...columnChecks(label, qualified, { records: input.records, mapping, source, target }));
  if (mapping.mode === "history") {
    out.push(
      ...historyUniqueChecks(label, qualified, { target, keyColumns: source.identityColumns }),
    );
  }
  const keyCheck = `${label} replica identity key`;
  const missingKey = source.identityColumns.filter((c) => !target.columns.has(c));
  if (missingKey.length > 0) {
    const cols = source.columns.filter((c) => missingKey.includes(c.name));
    out.push({
      status: "FAIL",
      check: keyCheck,
      problem: `key column${missingKey.length > 1 ? "s" : ""} ${
        missingKey.join(", ")
      } of ${source.schema}.${source.name} ${
        missingKey.length > 1 ? "are" : "is"
      } missing here: updates and deletes could not find their rows`,
      fix: `ALTER TABLE ${qualified} ${
        cols.map((c) => `ADD COLUMN ${sqlName(c.name)} ${c.type}`).join(", ")
      };`,
    });
  } else if (source.identityColumns.length > 0) {
    out.push({ status: "ok", check: keyCheck });
  }
  return out;
}

/** What {@link columnChecks} compares. */
interface ColumnCheckInput {
  /** kvsz's records of the table, one per sid that has one. */
  records: SyncedTableRow[];
  /** The table's mapping (its drift policy). */
  mapping: TableMapping;
  /** The source table as the source has it. */
  source: SourceTable;
  /** The target table as the destination has it. */
  target: TargetTable;
}

/**
 * Target columns the source does not fill. Once kvsz has run, its records
 * tell which target columns it filled from source columns that are gone
 * (dropped or renamed: column drift) and which source columns are new since
 * the copy. Before, the catalogs cannot tell a former source column from one
 * of your own: a target column the source lacks is named unless it has a
 * default (or is `sid` or `kvsz_*`), and fails when it is NOT NULL (every
 * new row would fail).
 */
function columnChecks(label: string, qualified: string, input: ColumnCheckInput): Check[] {
  const { records, mapping, source, target } = input;
  const check = `${label} columns`;
  const names = source.columns.map((c) => c.name);
  const computed = mapping.transform?.set; // filled by `set`, not by a source column
  const unfilled = [...target.columns.values()].filter((c) =>
    !names.includes(c.name) && !KVSZ_COLUMNS.has(c.name) && !c.hasDefault && !computed?.has(c.name)
  );
  const out: Check[] = [];
  const notNull = unfilled.filter((c) => c.notNull).map((c) => c.name);
  if (notNull.length > 0) {
    out.push({
      status: "FAIL",
      check,
      problem: `column(s) ${
        notNull.join(", ")
      } are NOT NULL without a default, and ${source.schema}.${source.name} has no such column: every new row would fail`,
      fix: `if the source renamed it, rename it here too; else ${
        notNull.map((c) => `ALTER TABLE ${qualified} ALTER COLUMN ${sqlName(c)} DROP NOT NULL`)
          .join("; ")
      } (or give it a default)`,
    });
  }
  const known = records.filter((r) => r.sourceColumns !== null);
  const place = {
    source: `${source.schema}.${source.name}`,
    target: `${target.schema}.${target.name}`,
  };
  if (known.length > 0) {
    const seen = new Set<string>();
    const drift = known.flatMap((r) =>
      compareColumns(names, target.columns.keys(), r.sourceColumns!).drift
    ).filter((d) => !seen.has(d.kind + d.column) && seen.add(d.kind + d.column));
    const stoppedLsn = records.find((r) => r.stoppedLsn !== null)?.stoppedLsn ?? null;
    const notice = driftNotice(place, drift, { stoppedLsn, policy: mapping.onColumnDrift });
    if (notice) out.push({ status: "WARN", check, ...notice });
  } else {
    const nullable = unfilled.filter((c) => !c.notNull).map((c) => c.name);
    if (nullable.length > 0) {
      out.push({
        status: "WARN",
        check,
        problem: `column(s) ${
          nullable.join(", ")
        } have no default and ${place.source} has no such column: kvsz leaves them NULL`,
        fix:
          `if the source dropped or renamed them, drop or rename them here; a column of your own: give it a default`,
      });
    }
  }
  return out.length > 0 ? out : [{ status: "ok", check }];
}

/** What {@link foreignKeyChecks} looks at. */
interface ForeignKeyCheckInput {
  /** `destination.schema`. */
  schema: string;
  /** The source database: its targets are the ones a key may reference. */
  db: DatabaseMapping;
  /** The target whose foreign keys are checked. */
  target: TargetTable;
}

/**
 * A foreign key checked row by row (not DEFERRABLE) between two targets of one
 * source database. kvsz writes parents before children, but a batch that
 * deletes a parent row and its children breaks it and is applied again one
 * change at a time (correct, but slow). Deferrable ones are deferred to kvsz's
 * COMMIT.
 */
function foreignKeyChecks(
  label: string,
  qualified: string,
  input: ForeignKeyCheckInput,
): Check[] {
  const { schema, db, target } = input;
  const targets = new Set(db.tables.map((m) => `${targetSchemaOf(m, schema)}.${m.target}`));
  return target.foreignKeys
    .filter((fk) => !fk.deferrable && targets.has(fk.references))
    .map((fk) => ({
      status: "WARN" as const,
      check: `${label} foreign key ${fk.name}`,
      problem:
        `foreign key ${fk.name} to ${fk.references} is not DEFERRABLE: a batch that deletes a parent row with its children is applied again one change at a time (slow)`,
      fix: `ALTER TABLE ${qualified} ALTER CONSTRAINT ${sqlName(fk.name)} DEFERRABLE;`,
    }));
}

/** What {@link historyUniqueChecks} looks at. */
interface HistoryUniqueInput {
  /** The history target. */
  target: TargetTable;
  /** The source table's replica identity columns. */
  keyColumns: string[];
}

/**
 * A unique index of a history target on columns that versions of one key
 * share (`sid`, the key, `kvsz_*`) rejects versions kvsz writes: a key changed
 * twice in one source transaction has two versions starting at its commit
 * time, and closed versions may end at the same time.
 */
function historyUniqueChecks(
  label: string,
  qualified: string,
  input: HistoryUniqueInput,
): Check[] {
  const { target, keyColumns } = input;
  const shared = new Set<string>([SID_COLUMN, ...HISTORY_COLUMNS, ...keyColumns]);
  return target.uniqueKeys
    .filter((cols) => cols.every((c) => shared.has(c)))
    .map((cols) => ({
      status: "WARN" as const,
      check: `${label} unique (${cols.join(", ")})`,
      problem: `a unique index on (${
        cols.join(", ")
      }) rejects the versions of a key changed twice in one source transaction (they share its commit time): kvsz would stop there`,
      fix:
        `drop it (or the primary key); to keep current rows unique: CREATE UNIQUE INDEX ON ${qualified} (${
          [...(target.hasSid ? [SID_COLUMN] : []), ...keyColumns].map(sqlName).join(", ")
        }) WHERE kvsz_end = '9999-01-01';`,
    }));
}

function historyCheck(label: string, qualified: string, target: TargetTable): Check {
  const check = `${label} history columns`;
  const missing = HISTORY_COLUMNS.filter((c) => !target.columns.has(c));
  const wrong = HISTORY_COLUMNS.filter((c) =>
    target.columns.has(c) && target.columns.get(c)!.type !== HISTORY_COLUMN_TYPES[c]
  );
  if (missing.length === 0 && wrong.length === 0) return { status: "ok", check };
  const problems = [
    ...(missing.length ? [`missing ${missing.join(", ")}`] : []),
    ...wrong.map((c) =>
      `${c} is ${target.columns.get(c)!.type}, must be ${HISTORY_COLUMN_TYPES[c]}`
    ),
  ];
  const fixes = [
    ...missing.map((c) => `ADD COLUMN ${c} ${HISTORY_DDL[c]}`),
    ...wrong.map((c) => `ALTER COLUMN ${c} TYPE ${HISTORY_DDL[c]}`),
  ];
  return {
    status: "FAIL",
    check,
    problem:
      `history mode needs kvsz_start timestamptz, kvsz_end timestamptz, kvsz_deleted boolean: ${
        problems.join("; ")
      }`,
    fix: `ALTER TABLE ${qualified} ${fixes.join(", ")};`,
  };
}

/** Options of {@link createTableHint}. */
export interface TableHintOptions {
  /** The mapping's mode: history adds the kvsz_* columns and no primary key. */
  mode: TableMode;
  /** Add a `sid text` column, first in the primary key (several sources share the table). */
  withSid: boolean;
}

/** A `CREATE TABLE` statement for a target of `source`, as a fix hint. */
export function createTableHint(
  qualified: string,
  source: SourceTable,
  opts: TableHintOptions,
): string {
  const { mode, withSid } = opts;
  const cols = [
    ...(withSid ? ["sid text"] : []),
    ...source.columns.filter((c) => !(withSid && c.name === SID_COLUMN)).map((c) =>
      `${sqlName(c.name)} ${c.type}`
    ),
    ...(mode === "history"
      ? ["kvsz_start timestamptz", "kvsz_end timestamptz", "kvsz_deleted boolean"]
      : []),
  ];
  const key = source.primaryKey.length > 0 && mode !== "history"
    ? [
      `PRIMARY KEY (${
        [...(withSid ? ["sid"] : []), ...source.primaryKey].map(sqlName).join(", ")
      })`,
    ]
    : [];
  return `CREATE TABLE ${qualified} (${[...cols, ...key].join(", ")});`;
}
