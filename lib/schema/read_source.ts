/**
 * Reads from one source's catalog what a database entry's targets need
 * (PostgreSQL 12+): schemas, the user-defined types their columns use,
 * sequences, tables with their partitions and primary keys, what is made
 * after the copy (indexes, constraints, triggers), and what is not created.
 * Read with `search_path = pg_catalog`, so every name printed is qualified.
 */
import { type TableMapping, targetSchemaOf } from "../config/types.ts";
import type { Sql } from "../pg/connect.ts";
import { qualify, quoteIdent } from "../pg/identifiers.ts";
import { textArrayLiteral } from "../pg/array_literal.ts";
import { SID_COLUMN } from "../apply/catalog.ts";
import type {
  AfterCopyObject,
  ColumnDescription,
  NotCreated,
  ObjectName,
  PartitionDescription,
  SchemaDescription,
  SequenceDescription,
  SequenceOptions,
  TableDescription,
  TypeDescription,
} from "./description.ts";
import {
  addConstraintDdl,
  constraintWithSid,
  foreignKeyDef,
  objectName,
  targetIndexDdl,
  targetTriggerDdl,
} from "./ddl.ts";

/** A mapped table to describe, with where it goes. */
export interface MappedTable {
  mapping: TableMapping;
  /** The relation read: the mapped table, or for `partitions_regex` the first one it names. */
  source: ObjectName;
  /** The target. */
  target: ObjectName;
  /** Several sources share the target: a leading `sid` in it and its keys. */
  withSid: boolean;
}

/** Options of {@link readSourceSchema}. */
export interface ReadSchemaOptions {
  /** `destination.schema`, the schema of targets that name none. */
  destinationSchema: string;
  /** Several sources write each target (urls > 1 or a discover block). */
  withSid: boolean;
}

type Row = Record<string, unknown>;

const SYSTEM_SCHEMAS = `('pg_catalog', 'information_schema', 'pg_toast')`;

/** Functions (`regprocedure` text) outside the system schemas that catalog object `classid`/`objid` depends on. */
const FUNCTIONS_OF = (classid: string, objid: string) =>
  `to_json(ARRAY(SELECT d.refobjid::regprocedure::text FROM pg_catalog.pg_depend d
           JOIN pg_catalog.pg_proc p ON p.oid = d.refobjid
           JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
          WHERE d.classid = '${classid}'::regclass AND d.objid = ${objid}
            AND d.refclassid = 'pg_catalog.pg_proc'::regclass
            AND pn.nspname NOT IN ${SYSTEM_SCHEMAS} ORDER BY 1))`;

/**
 * Describes what `tables` (the mapped tables of one database entry, resolved
 * on this source, see {@link mappedTable}) need at the destination.
 */
export async function readSourceSchema(
  sql: Sql,
  tables: MappedTable[],
): Promise<SchemaDescription> {
  const notCreated: NotCreated[] = [];
  const oids = new Map<string, MappedTable>();
  for (const t of tables) {
    const [r] = await sql.unsafe(`SELECT $1::regclass::oid::int8 AS oid`, [
      qualify(t.source.schema, t.source.name),
    ]);
    oids.set(String(r.oid), t);
  }
  const byTarget = new Map<string, MappedTable>();
  for (const t of oids.values()) byTarget.set(qualify(t.target.schema, t.target.name), t);
  const described: TableDescription[] = [];
  for (const [oid, t] of oids) {
    if (
      described.some((d) => d.table.schema === t.target.schema && d.table.name === t.target.name)
    ) {
      continue; // two mappings into one target: the first describes it
    }
    described.push(await readTable(sql, oid, t));
  }
  const tableOids = [...oids.keys()];
  const types = await readTypes(sql, tableOids, notCreated);
  const sequences = await readSequences(sql, oids);
  const afterCopy = [
    ...await readIndexes(sql, oids, notCreated),
    ...await readConstraints(sql, { oids, byTarget, notCreated }),
    ...await readTriggers(sql, oids, notCreated),
    ...historyIndexes(described),
  ];
  const sourceSchemas = [...new Set(tables.map((t) => t.source.schema))].sort();
  notCreated.push(...await readOthers(sql, tableOids, sourceSchemas));
  const schemas = new Set<string>([
    ...described.map((t) => t.table.schema),
    ...types.map((t) => t.type.schema),
    ...sequences.map((s) => s.sequence.schema),
  ]);
  return {
    schemas: [...schemas].sort(),
    types,
    sequences,
    tables: described,
    afterCopy,
    notCreated,
    sourceSchemas,
  };
}

/** The mapped table's target for `opts` (see {@link MappedTable}). */
export function mappedTable(
  mapping: TableMapping,
  source: ObjectName,
  opts: ReadSchemaOptions,
): MappedTable {
  return {
    mapping,
    source,
    target: { schema: targetSchemaOf(mapping, opts.destinationSchema), name: mapping.target },
    withSid: opts.withSid,
  };
}

function sequenceOptions(r: Row, prefix = ""): SequenceOptions {
  return {
    dataType: String(r[`${prefix}type`] ?? "bigint"),
    start: String(r[`${prefix}start`]),
    increment: String(r[`${prefix}increment`]),
    min: String(r[`${prefix}min`]),
    max: String(r[`${prefix}max`]),
    cache: String(r[`${prefix}cache`]),
    cycle: Boolean(r[`${prefix}cycle`]),
  };
}

const SEQUENCE_COLUMNS = (alias: string, prefix = "") => `
  pg_catalog.format_type(${alias}.seqtypid, NULL) AS ${prefix}type,
  ${alias}.seqstart::text AS ${prefix}start, ${alias}.seqincrement::text AS ${prefix}increment,
  ${alias}.seqmin::text AS ${prefix}min, ${alias}.seqmax::text AS ${prefix}max,
  ${alias}.seqcache::text AS ${prefix}cache, ${alias}.seqcycle AS ${prefix}cycle`;

/** One target's columns, key, partitioning and partitions. */
async function readTable(sql: Sql, oid: string, t: MappedTable): Promise<TableDescription> {
  const rows = await sql.unsafe(
    `SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
            CASE WHEN a.attcollation <> 0 AND a.attcollation <> ty.typcollation
                 THEN pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname)
            END AS collation,
            a.attnotnull AS not_null, a.attidentity AS identity, a.attgenerated AS generated,
            pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) AS expr,
            ${FUNCTIONS_OF("pg_catalog.pg_attrdef", "ad.oid")} AS functions,
            ${SEQUENCE_COLUMNS("s", "seq_")},
            (SELECT ps.last_value::text FROM pg_catalog.pg_sequences ps
              WHERE ps.schemaname = sn.nspname AND ps.sequencename = sc.relname) AS seq_last
       FROM pg_catalog.pg_attribute a
       JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
       LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
       LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
       LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
       LEFT JOIN pg_catalog.pg_depend dep ON a.attidentity <> ''
            AND dep.refclassid = 'pg_catalog.pg_class'::regclass AND dep.refobjid = a.attrelid
            AND dep.refobjsubid = a.attnum AND dep.deptype = 'i'
            AND dep.classid = 'pg_catalog.pg_class'::regclass
       LEFT JOIN pg_catalog.pg_sequence s ON s.seqrelid = dep.objid
       LEFT JOIN pg_catalog.pg_class sc ON sc.oid = s.seqrelid
       LEFT JOIN pg_catalog.pg_namespace sn ON sn.oid = sc.relnamespace
      WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [oid],
  );
  const columns: ColumnDescription[] = rows
    .filter((r) => !(t.withSid && r.name === SID_COLUMN))
    .map((r) => {
      const identity = String(r.identity);
      const generated = String(r.generated);
      const expr = r.expr === null ? null : String(r.expr);
      return {
        name: String(r.name),
        type: String(r.type),
        collation: r.collation === null ? null : String(r.collation),
        notNull: Boolean(r.not_null),
        default: generated === "" && identity === "" ? expr : null,
        identity: identity === "a" || identity === "d"
          ? {
            kind: identity,
            options: sequenceOptions(r, "seq_"),
            lastValue: r.seq_last === null ? null : String(r.seq_last),
          }
          : null,
        generated: (generated === "s" || generated === "v") && expr !== null
          ? { expression: expr, kind: generated }
          : null,
        functions: (r.functions as string[] | null) ?? [],
      };
    });
  const [rel] = await sql.unsafe(
    `SELECT c.relkind,
            CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END AS partkey,
            to_json(ARRAY(SELECT a.attname::text FROM pg_catalog.pg_constraint k,
                         unnest(k.conkey) WITH ORDINALITY u(attnum, ord)
                    JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = u.attnum
                   WHERE k.conrelid = c.oid AND k.contype = 'p' ORDER BY u.ord)) AS pk
       FROM pg_catalog.pg_class c WHERE c.oid = $1::int8::oid`,
    [oid],
  );
  const history = t.mapping.mode === "history";
  const pk = (rel.pk as string[]).filter((c) => c !== SID_COLUMN);
  const regex = Boolean(t.mapping.partitionsRegex);
  const partitioned = rel.relkind === "p" && !regex;
  return {
    table: t.target,
    source: t.source,
    columns,
    withSid: t.withSid,
    history,
    primaryKey: history || pk.length === 0 ? [] : [...(t.withSid ? [SID_COLUMN] : []), ...pk],
    sourceKey: pk,
    partitionBy: partitioned ? String(rel.partkey) : null,
    partitions: partitioned ? await readPartitions(sql, oid, t.target) : [],
  };
}

/** Every partition of partitioned table `oid`, parents first, named in `target`'s schema. */
async function readPartitions(
  sql: Sql,
  oid: string,
  target: ObjectName,
): Promise<PartitionDescription[]> {
  const rows = await sql.unsafe(
    `WITH RECURSIVE tree AS (
       SELECT i.inhrelid AS oid, i.inhparent AS parent, 1 AS depth
         FROM pg_catalog.pg_inherits i WHERE i.inhparent = $1::int8::oid
       UNION ALL
       SELECT i.inhrelid, i.inhparent, t.depth + 1
         FROM pg_catalog.pg_inherits i JOIN tree t ON i.inhparent = t.oid)
     SELECT c.relname AS name, pc.relname AS parent, t.parent = $1::int8::oid AS top,
            pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound,
            CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END AS partkey
       FROM tree t
       JOIN pg_catalog.pg_class c ON c.oid = t.oid
       JOIN pg_catalog.pg_class pc ON pc.oid = t.parent
      WHERE c.relkind IN ('r', 'p')
      ORDER BY t.depth, c.relname`,
    [oid],
  );
  return rows.map((r) => ({
    table: { schema: target.schema, name: String(r.name) },
    parent: r.top ? target : { schema: target.schema, name: String(r.parent) },
    bound: String(r.bound),
    partitionBy: r.partkey === null ? null : String(r.partkey),
  }));
}

/**
 * The user-defined types the tables' columns use, and the types those use
 * (arrays' elements, domains' bases, composites' attributes), dependencies
 * first. Types of extensions, ranges and base types are listed as not created.
 */
async function readTypes(
  sql: Sql,
  tableOids: string[],
  notCreated: NotCreated[],
): Promise<TypeDescription[]> {
  const [{ oids }] = await sql.unsafe(
    `SELECT to_json(ARRAY(SELECT DISTINCT a.atttypid::int8::text FROM pg_catalog.pg_attribute a
                   WHERE a.attrelid = ANY($1::int8[]::oid[]) AND a.attnum > 0
                     AND NOT a.attisdropped)) AS oids`,
    [textArrayLiteral(tableOids)],
  );
  const out: TypeDescription[] = [];
  const seen = new Set<string>();
  const visit = async (typeOid: string): Promise<void> => {
    if (seen.has(typeOid)) return;
    seen.add(typeOid);
    const [t] = await sql.unsafe(
      `SELECT n.nspname AS schema, t.typname AS name, t.typtype, t.typelem::int8 AS elem,
              t.typbasetype::int8 AS base, t.typrelid::int8 AS relid, t.typcategory,
              pg_catalog.format_type(t.typbasetype, t.typtypmod) AS base_type,
              CASE WHEN t.typcollation <> 0 AND t.typcollation <> bt.typcollation
                   THEN pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname)
              END AS collation,
              t.typnotnull AS not_null,
              pg_catalog.pg_get_expr(t.typdefaultbin, 0) AS default_expr,
              (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) AS relkind,
              EXISTS (SELECT FROM pg_catalog.pg_depend d
                       WHERE d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = t.oid
                         AND d.deptype = 'e') AS of_extension,
              (SELECT e.extname FROM pg_catalog.pg_depend d
                 JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
                WHERE d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = t.oid
                  AND d.deptype = 'e' LIMIT 1) AS extension
         FROM pg_catalog.pg_type t
         JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
         LEFT JOIN pg_catalog.pg_type bt ON bt.oid = t.typbasetype
         LEFT JOIN pg_catalog.pg_collation co ON co.oid = t.typcollation
         LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
        WHERE t.oid = $1::int8::oid`,
      [typeOid],
    );
    if (!t) return;
    if (t.typcategory === "A" && String(t.elem) !== "0") return await visit(String(t.elem));
    const system = ["pg_catalog", "information_schema"].includes(String(t.schema));
    if (system) return;
    const type = { schema: String(t.schema), name: String(t.name) };
    const qualified = qualify(type.schema, type.name);
    if (t.of_extension) {
      notCreated.push({
        kind: "extension",
        name: String(t.extension),
        reason: `type ${qualified} is the extension's`,
      });
      return;
    }
    if (t.typtype === "e") {
      const labels = await sql.unsafe(
        `SELECT enumlabel AS label FROM pg_catalog.pg_enum
          WHERE enumtypid = $1::int8::oid ORDER BY enumsortorder`,
        [typeOid],
      );
      out.push({ kind: "enum", type, labels: labels.map((l) => String(l.label)) });
    } else if (t.typtype === "d") {
      await visit(String(t.base));
      const [checks] = await sql.unsafe(
        `SELECT to_json(ARRAY(SELECT ARRAY[k.conname::text, pg_catalog.pg_get_constraintdef(k.oid)]
                        FROM pg_catalog.pg_constraint k
                       WHERE k.contypid = $1::int8::oid AND k.contype = 'c' ORDER BY k.conname))
                  AS checks,
                to_json(ARRAY(SELECT DISTINCT d.refobjid::regprocedure::text FROM pg_catalog.pg_depend d
                        JOIN pg_catalog.pg_proc p ON p.oid = d.refobjid
                        JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
                       WHERE d.refclassid = 'pg_catalog.pg_proc'::regclass
                         AND pn.nspname NOT IN ${SYSTEM_SCHEMAS}
                         AND ((d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = $1::int8::oid)
                           OR (d.classid = 'pg_catalog.pg_constraint'::regclass AND d.objid IN
                                (SELECT oid FROM pg_catalog.pg_constraint WHERE contypid = $1::int8::oid)))))
                  AS functions`,
        [typeOid],
      );
      out.push({
        kind: "domain",
        type,
        baseType: String(t.base_type),
        collation: t.collation === null ? null : String(t.collation),
        default: t.default_expr === null ? null : String(t.default_expr),
        notNull: Boolean(t.not_null),
        checks: (checks.checks as string[][]).map(([n, d]) => [n, d] as [string, string]),
        functions: (checks.functions as string[]) ?? [],
      });
    } else if (t.typtype === "c" && t.relkind === "c") {
      const attrs = await sql.unsafe(
        `SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
                a.atttypid::int8 AS type_oid
           FROM pg_catalog.pg_attribute a
          WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum`,
        [String(t.relid)],
      );
      for (const a of attrs) await visit(String(a.type_oid));
      out.push({
        kind: "composite",
        type,
        attributes: attrs.map((a) => ({ name: String(a.name), type: String(a.type) })),
      });
    } else {
      const what = t.typtype === "r" ? "range type" : t.typtype === "c" ? "row type" : "type";
      notCreated.push({ kind: what, name: qualified, reason: "a column uses it" });
    }
  };
  for (const o of oids as (string | number)[]) await visit(String(o));
  return out;
}

/**
 * The sequences of the tables' source schemas (an upgrade's `nextval`
 * defaults and the application's own), identity sequences aside (made with
 * their columns), with the mapped column that owns each.
 */
async function readSequences(
  sql: Sql,
  oids: Map<string, MappedTable>,
): Promise<SequenceDescription[]> {
  const schemas = [...new Set([...oids.values()].map((t) => t.source.schema))];
  const rows = await sql.unsafe(
    `SELECT n.nspname AS schema, c.relname AS name, ${SEQUENCE_COLUMNS("s")},
            (SELECT ps.last_value::text FROM pg_catalog.pg_sequences ps
              WHERE ps.schemaname = n.nspname AND ps.sequencename = c.relname) AS last_value,
            d.refobjid::int8 AS owner_oid, a.attname AS owner_column
       FROM pg_catalog.pg_sequence s
       JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass
            AND d.objid = c.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
            AND d.deptype IN ('a', 'i')
       LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
      WHERE n.nspname = ANY($1::text[])
        AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend i WHERE i.classid = 'pg_catalog.pg_class'::regclass
                           AND i.objid = c.oid AND i.deptype IN ('i', 'e'))
      ORDER BY n.nspname, c.relname`,
    [textArrayLiteral(schemas)],
  );
  return rows.map((r) => {
    const owner = r.owner_oid === null ? undefined : oids.get(String(r.owner_oid));
    return {
      sequence: { schema: String(r.schema), name: String(r.name) },
      ...sequenceOptions(r),
      lastValue: r.last_value === null ? null : String(r.last_value),
      ownedBy: owner ? { table: owner.target, column: String(r.owner_column) } : null,
    };
  });
}

/** Secondary indexes (not backing a constraint, not a partition's copy of its parent's). */
async function readIndexes(
  sql: Sql,
  oids: Map<string, MappedTable>,
  notCreated: NotCreated[],
): Promise<AfterCopyObject[]> {
  const rows = await sql.unsafe(
    `SELECT i.indrelid::int8 AS table_oid, ic.relname AS name, i.indisunique AS is_unique,
            pg_catalog.pg_get_indexdef(i.indexrelid) AS def,
            to_json(ARRAY(SELECT DISTINCT d.refobjid::regprocedure::text FROM pg_catalog.pg_depend d
                    JOIN pg_catalog.pg_proc p ON p.oid = d.refobjid
                    JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
                   WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = i.indexrelid
                     AND d.refclassid = 'pg_catalog.pg_proc'::regclass
                     AND pn.nspname NOT IN ${SYSTEM_SCHEMAS})) AS functions
       FROM pg_catalog.pg_index i
       JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
      WHERE i.indrelid = ANY($1::int8[]::oid[])
        AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k WHERE k.conindid = i.indexrelid
                          AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'))
      ORDER BY ic.relname`,
    [textArrayLiteral([...oids.keys()])],
  );
  const out: AfterCopyObject[] = [];
  for (const r of rows) {
    const t = oids.get(String(r.table_oid))!;
    const name = String(r.name);
    if (t.mapping.mode === "history" && r.is_unique) {
      notCreated.push({
        kind: "unique index",
        name: qualify(t.source.schema, name),
        reason: `history target ${t.target.name} keeps several versions of a key`,
      });
      continue;
    }
    const statement = targetIndexDdl(String(r.def), t.target, { name, withSid: t.withSid });
    if (!statement) {
      notCreated.push({ kind: "index", name, reason: `definition not understood: ${r.def}` });
      continue;
    }
    out.push({
      kind: "index",
      table: t.target,
      name,
      statement,
      functions: (r.functions as string[]) ?? [],
    });
  }
  return out;
}

/** What {@link readConstraints} needs. */
interface ConstraintInput {
  oids: Map<string, MappedTable>;
  /** Mapped tables by target (`qualify`d), to find a foreign key's referenced target. */
  byTarget: Map<string, MappedTable>;
  notCreated: NotCreated[];
}

/** Unique, check, exclusion and foreign-key constraints (inherited ones aside). */
async function readConstraints(sql: Sql, input: ConstraintInput): Promise<AfterCopyObject[]> {
  const { oids, notCreated } = input;
  const rows = await sql.unsafe(
    `SELECT k.conrelid::int8 AS table_oid, k.conname AS name, k.contype,
            pg_catalog.pg_get_constraintdef(k.oid) AS def,
            k.confrelid::int8 AS ref_oid, k.confmatchtype AS match,
            k.confupdtype AS on_update, k.confdeltype AS on_delete,
            to_json(ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(n, o)
                    JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n
                   ORDER BY u.o)) AS columns,
            to_json(ARRAY(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY u(n, o)
                    JOIN pg_catalog.pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n
                   ORDER BY u.o)) AS ref_columns,
            ${FUNCTIONS_OF("pg_catalog.pg_constraint", "k.oid")} AS functions
       FROM pg_catalog.pg_constraint k
      WHERE k.conrelid = ANY($1::int8[]::oid[]) AND k.contype IN ('u', 'c', 'x', 'f')
        AND (k.contype <> 'c' OR k.conislocal)
        AND (k.contype <> 'f' OR k.conparentid = 0)
      ORDER BY k.contype = 'f', k.conname`,
    [textArrayLiteral([...oids.keys()])],
  );
  const out: AfterCopyObject[] = [];
  for (const r of rows) {
    const t = oids.get(String(r.table_oid))!;
    const name = String(r.name);
    const def = String(r.def);
    const functions = (r.functions as string[]) ?? [];
    const skip = (reason: string) =>
      notCreated.push({ kind: "constraint", name: `${name} of ${t.source.name}`, reason });
    if (r.contype === "f") {
      const parent = oids.get(String(r.ref_oid));
      if (!parent) {
        skip(`it references a table that is not mapped`);
        continue;
      }
      if (t.mapping.mode !== "clone" || parent.mapping.mode === "history") {
        skip(`a ${t.mapping.mode} target keeps rows its ${parent.mapping.mode} parent loses`);
        continue;
      }
      const statement = addConstraintDdl(
        t.target,
        name,
        foreignKeyDef({
          columns: r.columns as string[],
          references: parent.target,
          referencedColumns: r.ref_columns as string[],
          match: String(r.match),
          onUpdate: String(r.on_update),
          onDelete: String(r.on_delete),
          withSid: t.withSid,
        }),
      );
      out.push({ kind: "foreign key", table: t.target, name, statement, functions });
      continue;
    }
    if (t.mapping.mode === "history" && r.contype !== "c") {
      skip(`history target ${t.target.name} keeps several versions of a key`);
      continue;
    }
    if (r.contype === "x" && t.withSid) {
      skip("an exclusion constraint would compare the rows of different sources");
      continue;
    }
    const withSid = t.withSid ? constraintWithSid(def) : def;
    out.push({
      kind: "constraint",
      table: t.target,
      name,
      statement: addConstraintDdl(t.target, name, withSid),
      functions,
    });
  }
  return out;
}

/** Triggers, internal ones and partitions' clones aside, on targets that mirror their table. */
async function readTriggers(
  sql: Sql,
  oids: Map<string, MappedTable>,
  notCreated: NotCreated[],
): Promise<AfterCopyObject[]> {
  const rows = await sql.unsafe(
    `SELECT tg.tgrelid::int8 AS table_oid, tg.tgname AS name,
            pg_catalog.pg_get_triggerdef(tg.oid) AS def,
            tg.tgfoid::regprocedure::text AS function, tg.tgenabled AS enabled
       FROM pg_catalog.pg_trigger tg
      WHERE tg.tgrelid = ANY($1::int8[]::oid[]) AND NOT tg.tgisinternal
      ORDER BY tg.tgname`,
    [textArrayLiteral([...oids.keys()])],
  );
  const out: AfterCopyObject[] = [];
  for (const r of rows) {
    const t = oids.get(String(r.table_oid))!;
    const name = String(r.name);
    const statement = targetTriggerDdl(String(r.def), t.target);
    if (!statement) {
      notCreated.push({ kind: "trigger", name, reason: `definition not understood: ${r.def}` });
      continue;
    }
    out.push({
      kind: "trigger",
      table: t.target,
      name,
      statement,
      functions: [String(r.function)],
    });
  }
  return out;
}

/**
 * The indexes README recommends on a history target: unique on the key of the
 * current versions, and the key with `kvsz_start` for reads at a date.
 */
function historyIndexes(tables: TableDescription[]): AfterCopyObject[] {
  return tables.filter((t) => t.history && t.sourceKey.length > 0).flatMap((t) => {
    const key = [...(t.withSid ? [SID_COLUMN] : []), ...t.sourceKey].map(quoteIdent);
    const current = objectName(t.table.name, "_kvsz_current");
    const start = objectName(t.table.name, "_kvsz_start");
    const on = qualify(t.table.schema, t.table.name);
    return [
      {
        kind: "index" as const,
        table: t.table,
        name: current,
        statement: `CREATE UNIQUE INDEX ${quoteIdent(current)} ON ${on} (${
          key.join(", ")
        }) WHERE kvsz_end = '9999-01-01'`,
        functions: [],
      },
      {
        kind: "index" as const,
        table: t.table,
        name: start,
        statement: `CREATE INDEX ${quoteIdent(start)} ON ${on} (${
          [...key, "kvsz_start"].join(", ")
        })`,
        functions: [],
      },
    ];
  });
}

/** Views, materialized views, functions, extensions and policies that are not created. */
async function readOthers(
  sql: Sql,
  tableOids: string[],
  schemas: string[],
): Promise<NotCreated[]> {
  const rows = await sql.unsafe(
    `SELECT CASE c.relkind WHEN 'v' THEN 'view' ELSE 'materialized view' END AS kind,
            pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) AS name
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('v', 'm') AND n.nspname = ANY($1::text[])
        AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass
                          AND d.objid = c.oid AND d.deptype = 'e')
     UNION ALL
     SELECT CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END,
            p.oid::regprocedure::text
       FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = ANY($1::text[])
        AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::regclass
                          AND d.objid = p.oid AND d.deptype = 'e')
     UNION ALL
     SELECT 'extension', e.extname FROM pg_catalog.pg_extension e WHERE e.extname <> 'plpgsql'
     UNION ALL
     SELECT 'policy', pol.polname || ' on ' || pol.polrelid::regclass::text
       FROM pg_catalog.pg_policy pol WHERE pol.polrelid = ANY($2::int8[]::oid[])
     ORDER BY 1, 2`,
    [textArrayLiteral(schemas), textArrayLiteral(tableOids)],
  );
  return rows.map((r) => ({ kind: String(r.kind), name: String(r.name) }));
}
