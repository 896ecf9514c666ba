/** Pure functions turning a {@link SchemaDescription}'s parts into CREATE statements. */
import { qualify, quoteIdent, quoteLiteral } from "../pg/identifiers.ts";
import type {
  ColumnDescription,
  ObjectName,
  PartitionDescription,
  SequenceDescription,
  SequenceOptions,
  TableDescription,
  TypeDescription,
} from "./description.ts";

/** `"schema"."name"` of an object name. */
export function qualifiedName(o: ObjectName): string {
  return qualify(o.schema, o.name);
}

/** `CREATE SCHEMA IF NOT EXISTS`. */
export function createSchemaDdl(schema: string): string {
  return `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`;
}

/** `CREATE TYPE` (enum, composite) or `CREATE DOMAIN`. */
export function createTypeDdl(t: TypeDescription): string {
  const name = qualifiedName(t.type);
  switch (t.kind) {
    case "enum":
      return `CREATE TYPE ${name} AS ENUM (${t.labels.map(quoteLiteral).join(", ")})`;
    case "composite":
      return `CREATE TYPE ${name} AS (${
        t.attributes.map((a) => `${quoteIdent(a.name)} ${a.type}`).join(", ")
      })`;
    case "domain":
      return [
        `CREATE DOMAIN ${name} AS ${t.baseType}`,
        ...(t.collation ? [`COLLATE ${t.collation}`] : []),
        ...(t.default !== null ? [`DEFAULT ${t.default}`] : []),
        ...(t.notNull ? ["NOT NULL"] : []),
        ...t.checks.map(([n, def]) => `CONSTRAINT ${quoteIdent(n)} ${def}`),
      ].join(" ");
  }
}

/**
 * A sequence's options as `CREATE SEQUENCE` writes them; an identity column's
 * (`withType` false) take the column's type.
 */
export function sequenceOptionsDdl(o: SequenceOptions, withType = true): string {
  return [
    ...(withType ? [`AS ${o.dataType}`] : []),
    `START WITH ${o.start}`,
    `INCREMENT BY ${o.increment}`,
    `MINVALUE ${o.min}`,
    `MAXVALUE ${o.max}`,
    `CACHE ${o.cache}`,
    o.cycle ? "CYCLE" : "NO CYCLE",
  ].join(" ");
}

/** `CREATE SEQUENCE` with its options (its value and owner are set apart). */
export function createSequenceDdl(s: SequenceDescription): string {
  return `CREATE SEQUENCE ${qualifiedName(s.sequence)} ${sequenceOptionsDdl(s)}`;
}

/** `setval` to the source's value, or null when the source's was not read. */
export function sequenceValueDdl(sequence: ObjectName, lastValue: string | null): string | null {
  if (lastValue === null) return null;
  return `SELECT pg_catalog.setval(${
    quoteLiteral(qualifiedName(sequence))
  }::regclass, ${lastValue}, true)`;
}

/** `ALTER SEQUENCE … OWNED BY` its target column, or null. */
export function sequenceOwnerDdl(s: SequenceDescription): string | null {
  if (!s.ownedBy) return null;
  return `ALTER SEQUENCE ${qualifiedName(s.sequence)} OWNED BY ${qualifiedName(s.ownedBy.table)}.${
    quoteIdent(s.ownedBy.column)
  }`;
}

/**
 * A column's definition. `withDefault` false leaves its default out (a
 * function it calls is missing at the destination).
 */
export function columnDdl(c: ColumnDescription, withDefault = true): string {
  const parts = [quoteIdent(c.name), c.type];
  if (c.collation) parts.push(`COLLATE ${c.collation}`);
  if (c.generated) {
    parts.push(
      `GENERATED ALWAYS AS (${c.generated.expression}) ${
        c.generated.kind === "v" ? "VIRTUAL" : "STORED"
      }`,
    );
  } else if (c.identity) {
    parts.push(
      `GENERATED ${c.identity.kind === "a" ? "ALWAYS" : "BY DEFAULT"} AS IDENTITY (${
        sequenceOptionsDdl(c.identity.options, false)
      })`,
    );
  } else if (c.default !== null && withDefault) parts.push(`DEFAULT ${c.default}`);
  if (c.notNull) parts.push("NOT NULL");
  return parts.join(" ");
}

/** Options of {@link createTableDdl}. */
export interface TableDdlOptions {
  /** Columns whose default is left out (see {@link columnDdl}). */
  withoutDefault?: ReadonlySet<string>;
}

/** `CREATE TABLE` of a target: sid, its columns, the history columns, its primary key, partitioning. */
export function createTableDdl(t: TableDescription, opts: TableDdlOptions = {}): string {
  const lines = [
    ...(t.withSid ? ["sid text NOT NULL"] : []),
    ...t.columns.map((c) => columnDdl(c, !opts.withoutDefault?.has(c.name))),
    ...(t.history
      ? [
        "kvsz_start timestamptz NOT NULL",
        "kvsz_end timestamptz NOT NULL",
        "kvsz_deleted boolean NOT NULL",
      ]
      : []),
    ...(t.primaryKey.length > 0
      ? [`PRIMARY KEY (${t.primaryKey.map(quoteIdent).join(", ")})`]
      : []),
  ];
  const partition = t.partitionBy ? ` PARTITION BY ${t.partitionBy}` : "";
  return `CREATE TABLE ${qualifiedName(t.table)} (\n  ${lines.join(",\n  ")}\n)${partition}`;
}

/** `CREATE TABLE … PARTITION OF`. */
export function createPartitionDdl(p: PartitionDescription): string {
  const by = p.partitionBy ? ` PARTITION BY ${p.partitionBy}` : "";
  return `CREATE TABLE ${qualifiedName(p.table)} PARTITION OF ${
    qualifiedName(p.parent)
  } ${p.bound}${by}`;
}

/** An identifier as `pg_get_*def` prints it: quoted, or bare. */
const IDENT = String.raw`(?:"(?:[^"]|"")*"|[^\s."(]+)`;

/** `pg_get_indexdef` up to the access method: `CREATE [UNIQUE] INDEX name ON [ONLY] s.t USING `. */
const INDEX_HEAD = new RegExp(
  String.raw`^CREATE (UNIQUE )?INDEX ${IDENT} ON (?:ONLY )?${IDENT}\.${IDENT} USING (\S+) \(`,
);

/**
 * The `CREATE INDEX` of a source index (`pg_get_indexdef`) for target
 * `table`, named `name`; `sid` is put first among its columns when the
 * target has it and the index is unique. Null when the text is not understood.
 */
export function targetIndexDdl(
  indexDef: string,
  table: ObjectName,
  opts: { name: string; withSid: boolean },
): string | null {
  const m = INDEX_HEAD.exec(indexDef);
  if (!m) return null;
  const unique = Boolean(m[1]);
  const rest = indexDef.slice(m[0].length);
  const sid = opts.withSid && unique ? "sid, " : "";
  return `CREATE ${unique ? "UNIQUE " : ""}INDEX ${quoteIdent(opts.name)} ON ${
    qualifiedName(table)
  } USING ${m[2]} (${sid}${rest}`;
}

/**
 * A UNIQUE or PRIMARY KEY constraint definition with `sid` first among its
 * columns; other definitions unchanged.
 */
export function constraintWithSid(def: string): string {
  return def.replace(/^(UNIQUE(?: NULLS NOT DISTINCT)?|PRIMARY KEY) \(/, "$1 (sid, ");
}

/** `ALTER TABLE … ADD CONSTRAINT`. */
export function addConstraintDdl(table: ObjectName, name: string, def: string): string {
  return `ALTER TABLE ${qualifiedName(table)} ADD CONSTRAINT ${quoteIdent(name)} ${def}`;
}

/** A foreign key between two targets, as read from `pg_constraint`. */
export interface ForeignKeyParts {
  columns: string[];
  references: ObjectName;
  referencedColumns: string[];
  /** `confmatchtype`: `f` FULL, `s` SIMPLE. */
  match: string;
  /** `confupdtype`, `confdeltype`: a NO ACTION, r RESTRICT, c CASCADE, n SET NULL, d SET DEFAULT. */
  onUpdate: string;
  onDelete: string;
  /** Put `sid` first on both sides. */
  withSid: boolean;
}

const FK_ACTIONS: Record<string, string> = {
  a: "NO ACTION",
  r: "RESTRICT",
  c: "CASCADE",
  n: "SET NULL",
  d: "SET DEFAULT",
};

/**
 * A foreign key definition, `DEFERRABLE INITIALLY DEFERRED`: kvsz's batch
 * that deletes a parent row with its children is checked at its commit.
 */
export function foreignKeyDef(fk: ForeignKeyParts): string {
  const sid = fk.withSid ? ["sid"] : [];
  const cols = (names: string[]) => [...sid, ...names].map(quoteIdent).join(", ");
  return [
    `FOREIGN KEY (${cols(fk.columns)}) REFERENCES ${qualifiedName(fk.references)} (${
      cols(fk.referencedColumns)
    })`,
    ...(fk.match === "f" ? ["MATCH FULL"] : []),
    `ON UPDATE ${FK_ACTIONS[fk.onUpdate] ?? "NO ACTION"}`,
    `ON DELETE ${FK_ACTIONS[fk.onDelete] ?? "NO ACTION"}`,
    "DEFERRABLE INITIALLY DEFERRED",
  ].join(" ");
}

/**
 * A source trigger's `pg_get_triggerdef` on target `table`: its table name
 * replaced. Null when the text is not understood.
 */
export function targetTriggerDdl(triggerDef: string, table: ObjectName): string | null {
  const m = new RegExp(
    String
      .raw`^(CREATE (?:CONSTRAINT )?TRIGGER ${IDENT} (?:BEFORE|AFTER|INSTEAD OF) .*? ON )${IDENT}\.${IDENT} `,
  ).exec(triggerDef);
  if (!m) return null;
  return `${m[1]}${qualifiedName(table)} ${triggerDef.slice(m[0].length)}`;
}

/** An index or constraint name of at most 63 bytes: `base` cut, then `suffix`. */
export function objectName(base: string, suffix: string): string {
  const bytes = new TextEncoder();
  let b = base;
  while (bytes.encode(b + suffix).length > 63) b = b.slice(0, -1);
  return b + suffix;
}
