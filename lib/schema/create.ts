/**
 * `destination.create_tables`: creates at the destination what the targets
 * need and it lacks, from a {@link SchemaDescription}. Before the copy:
 * schemas, types, sequences, tables with their primary keys, partitions.
 * After it: indexes and constraints (tables in parallel), then triggers, then
 * foreign keys. Whatever exists is left alone (checked object by object); an
 * object that fails is logged and the rest goes on.
 */
import type { Config, DatabaseMapping } from "../config/types.ts";
import { connect, type Sql } from "../pg/connect.ts";
import { qualify } from "../pg/identifiers.ts";
import { redactUrl } from "../pg/redact.ts";
import { textArrayLiteral } from "../pg/array_literal.ts";
import { describeError } from "../pg/describe.ts";
import { log } from "../log.ts";
import { resolveTables } from "../source/tables.ts";
import { serverMajor } from "../pg/connect.ts";
import type { AfterCopyObject, NotCreated, ObjectName, SchemaDescription } from "./description.ts";
import {
  createPartitionDdl,
  createSchemaDdl,
  createSequenceDdl,
  createTableDdl,
  createTypeDdl,
  qualifiedName,
  sequenceOwnerDdl,
  sequenceValueDdl,
} from "./ddl.ts";
import { mappedTable, readSourceSchema } from "./read_source.ts";

/** Destination connections the after-copy statements use at once. */
const AFTER_COPY_CONNECTIONS = 4;

/** Schema descriptions of the config's database entries, by `DatabaseMapping.database`. */
export type SchemaPlans = Map<string, SchemaDescription>;

const logger = () => log("schema");

/** True when the entry's targets get a `sid` column (several sources, or tenants discovered). */
export function entryHasSid(db: DatabaseMapping): boolean {
  return db.urls.length > 1 || db.discover !== undefined;
}

/**
 * Reads the schema of one source of `db` (its first URL; every source of an
 * entry shares a schema); null when the entry has no URL (only a discover block).
 */
export async function readEntrySchema(
  config: Config,
  db: DatabaseMapping,
): Promise<SchemaDescription | null> {
  const url = db.urls[0]?.url;
  if (!url) return null;
  const sql = connect(url, { connectTimeout: 10, params: { search_path: "pg_catalog" } });
  try {
    const major = await serverMajor(sql);
    const resolved = await resolveTables(sql, db.tables, major);
    const opts = { destinationSchema: config.destination.schema, withSid: entryHasSid(db) };
    const tables = resolved.map((r) =>
      mappedTable(
        r.mapping,
        r.mapping.partitionsRegex ? r.copied[0] : {
          schema: r.mapping.sourceSchema,
          name: r.mapping.sourceName,
        },
        opts,
      )
    );
    return await readSourceSchema(sql, tables);
  } finally {
    await sql.end({ timeout: 2 }).catch(() => {});
  }
}

/** Counts of objects created, by kind, for the summary line. */
type Counts = Map<string, number>;

function counted(counts: Counts, kind: string): void {
  counts.set(kind, (counts.get(kind) ?? 0) + 1);
}

function summary(counts: Counts): string {
  return [...counts].map(([k, n]) => `${n} ${k}${n === 1 ? "" : "s"}`).join(", ") || "nothing";
}

/**
 * Reads every database entry's schema from its source and creates what is
 * missing before the copy; returns the descriptions for {@link createAfterCopy}.
 */
export async function createBeforeCopy(config: Config): Promise<SchemaPlans> {
  const plans: SchemaPlans = new Map();
  const dest = connect(config.destination.url, { connectTimeout: 10 });
  try {
    for (const db of config.databases) {
      const plan = await readEntrySchema(config, db);
      if (!plan) {
        logger().warn(
          "create_tables: {database} has no urls entry to read its tables from: its targets are created once a database is discovered",
          { database: db.database },
        );
        continue;
      }
      plans.set(db.database, plan);
      const counts = await createTables(dest, plan);
      logger().info("create_tables: {database}: created {summary} before the copy", {
        database: db.database,
        summary: summary(counts),
      });
      warnNotCreated(db, plan);
    }
  } finally {
    await dest.end({ timeout: 2 }).catch(() => {});
  }
  return plans;
}

async function exists(sql: Sql, query: string, params: string[]): Promise<boolean> {
  const [r] = await sql.unsafe(`SELECT EXISTS (${query}) AS found`, params);
  return Boolean(r.found);
}

const RELATION_EXISTS = `SELECT FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`;

function relationExists(sql: Sql, o: ObjectName): Promise<boolean> {
  return exists(sql, RELATION_EXISTS, [o.schema, o.name]);
}

/** The functions of `names` (`regprocedure` text) the destination lacks. */
async function missingFunctions(sql: Sql, names: string[]): Promise<string[]> {
  if (names.length === 0) return [];
  const rows = await sql.unsafe(
    `SELECT f FROM unnest($1::text[]) f WHERE pg_catalog.to_regprocedure(f) IS NULL`,
    [textArrayLiteral(names)],
  );
  return rows.map((r) => String(r.f));
}

/** Runs `statement`, logs it as created; false (logged) when it fails. */
async function run(
  sql: Sql,
  statement: string,
  what: { kind: string; name: string },
): Promise<boolean> {
  try {
    await sql.unsafe(statement);
    logger().info("create_tables: created {kind} {name}", what);
    return true;
  } catch (e) {
    logger().error(
      "create_tables: could not create {kind} {name}: {error}; statement: {statement}",
      {
        ...what,
        error: describeError(e),
        statement,
      },
    );
    return false;
  }
}

/** Creates the schemas, types, sequences, tables and partitions of `plan` that are missing. */
export async function createTables(sql: Sql, plan: SchemaDescription): Promise<Counts> {
  const counts: Counts = new Map();
  for (const schema of plan.schemas) {
    if (await exists(sql, `SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1`, [schema])) {
      continue;
    }
    if (await run(sql, createSchemaDdl(schema), { kind: "schema", name: schema })) {
      counted(counts, "schema");
    }
  }
  for (const t of plan.types) {
    const found = await exists(
      sql,
      `SELECT FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = $1 AND t.typname = $2`,
      [t.type.schema, t.type.name],
    );
    if (found) continue;
    if (t.kind === "domain" && (await missingFunctions(sql, t.functions)).length > 0) {
      plan.notCreated.push({
        kind: "domain",
        name: qualifiedName(t.type),
        reason: `it calls ${t.functions.join(", ")}, missing at the destination`,
      });
      continue;
    }
    if (await run(sql, createTypeDdl(t), { kind: t.kind, name: qualifiedName(t.type) })) {
      counted(counts, "type");
    }
  }
  const newSequences = [];
  for (const s of plan.sequences) {
    if (await relationExists(sql, s.sequence)) continue;
    if (
      await run(sql, createSequenceDdl(s), { kind: "sequence", name: qualifiedName(s.sequence) })
    ) {
      counted(counts, "sequence");
      newSequences.push(s);
      const value = sequenceValueDdl(s.sequence, s.lastValue);
      if (value) await sql.unsafe(value);
    }
  }
  for (const t of plan.tables) {
    if (await relationExists(sql, t.table)) {
      logger().info("create_tables: table {name} exists: left as it is", {
        name: qualifiedName(t.table),
      });
      continue;
    }
    const withoutDefault = new Set<string>();
    for (const c of t.columns) {
      const missing = await missingFunctions(sql, c.functions);
      if (missing.length === 0 || c.generated) continue;
      withoutDefault.add(c.name);
      plan.notCreated.push({
        kind: "column default",
        name: `${qualifiedName(t.table)}.${c.name}`,
        reason: `DEFAULT ${c.default} calls ${missing.join(", ")}, missing at the destination`,
      });
    }
    const what = { kind: "table", name: qualifiedName(t.table) };
    if (!await run(sql, createTableDdl(t, { withoutDefault }), what)) continue;
    counted(counts, "table");
    for (const c of t.columns) {
      if (!c.identity?.lastValue) continue;
      await sql.unsafe(
        `SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence($1, $2), $3::int8, true)`,
        [qualifiedName(t.table), c.name, c.identity.lastValue],
      );
    }
    for (const p of t.partitions) {
      if (await relationExists(sql, p.table)) continue;
      if (
        await run(sql, createPartitionDdl(p), { kind: "partition", name: qualifiedName(p.table) })
      ) counted(counts, "partition");
    }
  }
  for (const s of newSequences) {
    const owner = sequenceOwnerDdl(s);
    if (owner) await sql.unsafe(owner).catch(() => {}); // its table left alone: no owner
  }
  return counts;
}

/** Whether after-copy object `o` exists at the destination. */
function afterCopyExists(sql: Sql, o: AfterCopyObject): Promise<boolean> {
  const table = qualify(o.table.schema, o.table.name);
  switch (o.kind) {
    case "index":
      return relationExists(sql, { schema: o.table.schema, name: o.name });
    case "trigger":
      return exists(
        sql,
        `SELECT FROM pg_catalog.pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2`,
        [table, o.name],
      );
    default:
      return exists(
        sql,
        `SELECT FROM pg_catalog.pg_constraint WHERE conrelid = $1::regclass AND conname = $2`,
        [table, o.name],
      );
  }
}

/**
 * Creates the indexes, constraints, triggers and foreign keys of `plan` that
 * are missing, once every source of the entry `database` is copied: indexes
 * and constraints with up to 4 tables at once, then triggers, then foreign
 * keys (DEFERRABLE INITIALLY DEFERRED: kvsz's batches are checked at commit).
 */
export async function createAfterCopy(
  destinationUrl: string,
  database: string,
  plan: SchemaDescription,
): Promise<void> {
  const sql = connect(destinationUrl, { connectTimeout: 10, max: AFTER_COPY_CONNECTIONS });
  const counts: Counts = new Map();
  const notCreated: NotCreated[] = [];
  const make = async (o: AfterCopyObject) => {
    try {
      if (!await relationExists(sql, o.table)) return; // not a table kvsz made or found
      if (await afterCopyExists(sql, o)) return;
      const missing = await missingFunctions(sql, o.functions);
      if (missing.length > 0) {
        notCreated.push({
          kind: o.kind,
          name: `${o.name} on ${qualifiedName(o.table)}`,
          reason: `it calls ${missing.join(", ")}, missing at the destination`,
        });
        return;
      }
      if (await run(sql, o.statement, { kind: o.kind, name: o.name })) counted(counts, o.kind);
    } catch (e) {
      logger().error("create_tables: {kind} {name}: {error}", {
        kind: o.kind,
        name: o.name,
        error: describeError(e),
      });
    }
  };
  try {
    const byTable = new Map<string, AfterCopyObject[]>();
    for (const o of plan.afterCopy.filter((o) => o.kind === "index" || o.kind === "constraint")) {
      const key = qualifiedName(o.table);
      byTable.set(key, [...(byTable.get(key) ?? []), o]);
    }
    // Up to AFTER_COPY_CONNECTIONS tables at once, each table's objects one after another.
    const queue = [...byTable.values()];
    await Promise.all(
      Array.from({ length: AFTER_COPY_CONNECTIONS }, async () => {
        for (let objects = queue.shift(); objects; objects = queue.shift()) {
          for (const o of objects) await make(o);
        }
      }),
    );
    for (const o of plan.afterCopy.filter((o) => o.kind === "trigger")) await make(o);
    const keys = plan.afterCopy.filter((o) => o.kind === "foreign key");
    for (const o of keys) await make(o);
    if (keys.length > 0) {
      logger().info(
        "create_tables: {database}: foreign keys are DEFERRABLE INITIALLY DEFERRED, checked at kvsz's commits",
        { database },
      );
    }
    logger().info("create_tables: {database}: created {summary} after the initial copy", {
      database,
      summary: summary(counts),
    });
    if (notCreated.length > 0) {
      logger().warn("create_tables: {database}: not created: {objects}", {
        database,
        objects: notCreated.map(describeNotCreated).join("; "),
      });
    }
  } finally {
    await sql.end({ timeout: 2 }).catch(() => {});
  }
}

function describeNotCreated(n: NotCreated): string {
  return `${n.kind} ${n.name}${n.reason ? ` (${n.reason})` : ""}`;
}

/**
 * The `pg_dump` commands that dump what kvsz does not create from the
 * source of `db` (advice only: kvsz never runs pg_dump).
 */
export function pgDumpAdvice(db: DatabaseMapping, schemas: string[]): string {
  const url = redactUrl(db.urls[0]?.url ?? db.discover?.url ?? "");
  const ns = schemas.map((s) => `-n '${s.replaceAll("'", "'\\''")}'`).join(" ");
  return `pg_dump --schema-only --no-owner ${ns} '${url}' (functions, views, types; ` +
    `--section=post-data for triggers and policies; -t TABLE for one table), ` +
    `with a pg_dump of the source's major or newer`;
}

/** Logs one warning listing what `create_tables` leaves to the user, with the pg_dump advice. */
export function warnNotCreated(db: DatabaseMapping, plan: SchemaDescription): void {
  if (plan.notCreated.length === 0) return;
  const byKind = new Map<string, string[]>();
  for (const n of plan.notCreated) {
    const text = describeNotCreated(n).slice(n.kind.length + 1);
    byKind.set(n.kind, [...(byKind.get(n.kind) ?? []), text]);
  }
  logger().warn(
    "create_tables: {database}: kvsz does not create {objects}; create them yourself, e.g. from {advice}",
    {
      database: db.database,
      objects: [...byKind].map(([k, names]) => `${k}: ${names.join(", ")}`).join("; "),
      advice: pgDumpAdvice(db, plan.sourceSchemas),
    },
  );
}
