/** The kvsz publication of a source: created when missing, its table list kept in line with the config. */
import type { Sql } from "../pg/connect.ts";
import { qualify, quoteIdent } from "../pg/identifiers.ts";
import type { QualifiedName } from "./catalog.ts";

/** What {@link syncPublication} changed. */
export interface PublicationChange {
  created: boolean;
  added: string[];
  dropped: string[];
  /** False when the publication does not exist (left so: nothing to publish). */
  exists: boolean;
}

/**
 * The name of a source's partitions publication (`kvszp_…`, never a name
 * `kvszObjectName` makes): it publishes the partitioned tables whose
 * leaves `partitions_regex` names, each leaf under its own name
 * (`publish_via_partition_root` off), from its ATTACH to its DETACH.
 */
export function partitionsPublicationName(name: string): string {
  return `kvszp_${name.slice("kvsz_".length)}`.slice(0, 63);
}

/** Options of {@link syncPublication}. */
export interface PublicationOptions {
  /** The source's major version (publishing through the partition root needs 13+). */
  major: number;
  /** Publish partitions through their root (`publish_via_partition_root`; default true). */
  viaRoot?: boolean;
  /** Create the publication when `tables` is empty too (default true). */
  createEmpty?: boolean;
}

/**
 * Makes publication `name` publish exactly `tables`: creates it when missing
 * (through the partition root on PG13+, unless `viaRoot` is false; not when
 * `tables` is empty and `createEmpty` is false), adds and drops tables otherwise.
 */
export async function syncPublication(
  sql: Sql,
  name: string,
  tables: QualifiedName[],
  opts: PublicationOptions,
): Promise<PublicationChange> {
  const { major } = opts;
  const wanted = new Map(tables.map((t) => [`${t.schema}.${t.name}`, t]));
  const existing = await sql.unsafe(`SELECT 1 FROM pg_publication WHERE pubname = $1`, [name]);
  if (existing.length === 0) {
    if (wanted.size === 0 && opts.createEmpty === false) {
      return { created: false, added: [], dropped: [], exists: false };
    }
    const list = [...wanted.values()].map((t) => qualify(t.schema, t.name)).join(", ");
    const forTables = list ? ` FOR TABLE ${list}` : "";
    const via = major >= 13 && opts.viaRoot !== false
      ? " WITH (publish_via_partition_root = true)"
      : "";
    await sql.unsafe(`CREATE PUBLICATION ${quoteIdent(name)}${forTables}${via}`);
    return { created: true, added: [...wanted.keys()], dropped: [], exists: true };
  }
  const members = await sql.unsafe(
    `SELECT n.nspname AS schema, c.relname AS name
       FROM pg_publication p
       JOIN pg_publication_rel pr ON pr.prpubid = p.oid
       JOIN pg_class c ON c.oid = pr.prrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE p.pubname = $1`,
    [name],
  );
  const have = new Set(members.map((m) => `${m.schema}.${m.name}`));
  const add = [...wanted.keys()].filter((k) => !have.has(k));
  const drop = members.filter((m) => !wanted.has(`${m.schema}.${m.name}`));
  if (add.length > 0) {
    const list = add.map((k) => wanted.get(k)!).map((t) => qualify(t.schema, t.name));
    await sql.unsafe(`ALTER PUBLICATION ${quoteIdent(name)} ADD TABLE ${list.join(", ")}`);
  }
  if (drop.length > 0) {
    const list = drop.map((t) => qualify(t.schema, t.name));
    await sql.unsafe(`ALTER PUBLICATION ${quoteIdent(name)} DROP TABLE ${list.join(", ")}`);
  }
  return {
    created: false,
    added: add,
    dropped: drop.map((t) => `${t.schema}.${t.name}`),
    exists: true,
  };
}
