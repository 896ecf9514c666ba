/**
 * Expands the `all_tables` of a config's database entries into table
 * mappings, read from each entry's first source (its sources share a
 * schema), and says what logical replication will not carry there.
 */
import type { Config, DatabaseMapping } from "../config/types.ts";
import { connect } from "../pg/connect.ts";
import { connectionFix, connectionProblem } from "../pg/describe.ts";
import { allTablesMappings, readInventory, type SourceInventory } from "../source/all_tables.ts";
import type { QualifiedName } from "../source/catalog.ts";
import type { Check } from "./check.ts";
import { sourceLabel } from "./source.ts";

/** Names listed in a check before "and N more". */
const LISTED = 10;

/**
 * `config` with every `all_tables` expanded into `tables` (and removed: a
 * second expansion changes nothing), and what the reads found.
 */
export async function expandAllTables(
  config: Config,
  opts: { connectTimeout?: number } = {},
): Promise<{ config: Config; checks: Check[] }> {
  const checks: Check[] = [];
  const databases = await Promise.all(config.databases.map(async (db) => {
    if (!db.allTables) return db;
    const { expanded, checks: found } = await expandEntry(db, {
      onColumnDrift: config.apply.onColumnDrift,
      connectTimeout: opts.connectTimeout,
    });
    checks.push(...found);
    return expanded;
  }));
  return { config: { ...config, databases }, checks };
}

async function expandEntry(
  db: DatabaseMapping,
  opts: { onColumnDrift: Config["apply"]["onColumnDrift"]; connectTimeout?: number },
): Promise<{ expanded: DatabaseMapping; checks: Check[] }> {
  const all = db.allTables!;
  const first = db.urls[0];
  if (!first) {
    return {
      expanded: db,
      checks: [{
        status: "FAIL",
        check: `database ${db.database} all_tables`,
        problem: "all_tables reads the tables from the entry's first source, and it lists none",
        fix: "list the source under urls",
      }],
    };
  }
  const label = `${sourceLabel(db.database, first.sid, first.url)} all_tables`;
  const sql = connect(first.url, { connectTimeout: opts.connectTimeout ?? 5 });
  let inventory: SourceInventory;
  try {
    inventory = await readInventory(sql, all);
  } catch (e) {
    return {
      expanded: db,
      checks: [{
        status: "FAIL",
        check: label,
        problem: connectionProblem(e, first.url),
        fix: connectionFix(e, first.url),
      }],
    };
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
  const added = allTablesMappings(inventory.tables, db.tables, {
    mode: all.mode,
    onColumnDrift: opts.onColumnDrift,
  });
  const checks: Check[] = [];
  if (added.length + db.tables.length === 0) {
    checks.push({
      status: "FAIL",
      check: label,
      problem: "no table to map: the schemas and exclusions leave none",
      fix: "check all_tables.schemas and all_tables.exclude",
    });
  } else {
    checks.push({ status: "ok", check: `${label}: ${added.length} table(s) mapped` });
  }
  checks.push(...notCarriedChecks(label, inventory));
  const { allTables: _, ...rest } = db;
  return { expanded: { ...rest, tables: [...db.tables, ...added] }, checks };
}

/** A WARN per kind of object logical replication does not carry, with what to do. */
function notCarriedChecks(label: string, inventory: SourceInventory): Check[] {
  const n = inventory.notCarried;
  const out: Check[] = [];
  const warn = (names: QualifiedName[], what: string, fix: string) => {
    if (names.length === 0) return;
    out.push({
      status: "WARN",
      check: `${label}: ${what}`,
      problem: `${what}: ${list(names)}`,
      fix,
    });
  };
  warn(
    n.unlogged,
    "unlogged tables are not carried (they write no WAL)",
    "ALTER TABLE … SET LOGGED at the source, or copy them while the switchover's fence is on",
  );
  warn(
    n.materializedViews,
    "materialized views are not carried",
    "create them at the destination (pg_dump --schema-only -t NAME, with a pg_dump as new as the source) and REFRESH MATERIALIZED VIEW after the switchover",
  );
  warn(
    n.foreignTables,
    "foreign tables are not carried (their rows live on another server)",
    "create the foreign server, user mapping and tables at the destination",
  );
  warn(
    n.extensionTables,
    "tables of extensions are left out",
    "CREATE EXTENSION at the destination creates them with the extension's own rows",
  );
  if (n.largeObjects > 0) {
    out.push({
      status: "WARN",
      check: `${label}: large objects are not carried`,
      problem:
        `${n.largeObjects} large object(s) (pg_largeobject) are not carried by logical replication`,
      fix:
        "copy them while the switchover's fence is on (lo_export and lo_import, or pg_dump --large-objects)",
    });
  }
  return out;
}

function list(names: QualifiedName[]): string {
  const shown = names.slice(0, LISTED).map((t) => `${t.schema}.${t.name}`).join(", ");
  return names.length > LISTED ? `${shown} and ${names.length - LISTED} more` : shown;
}
