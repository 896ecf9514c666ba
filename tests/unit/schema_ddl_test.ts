/** The statements `destination.create_tables` makes from a schema description (lib/schema/ddl.ts). */
import assert from "node:assert/strict";
import {
  constraintWithSid,
  createPartitionDdl,
  createTableDdl,
  createTypeDdl,
  foreignKeyDef,
  objectName,
  targetIndexDdl,
  targetTriggerDdl,
} from "../../lib/schema/ddl.ts";
import type { ColumnDescription, TableDescription } from "../../lib/schema/description.ts";

const column = (name: string, type: string, more: Partial<ColumnDescription> = {}) => ({
  name,
  type,
  collation: null,
  notNull: false,
  default: null,
  identity: null,
  generated: null,
  functions: [],
  ...more,
});

const table = (more: Partial<TableDescription> = {}): TableDescription => ({
  table: { schema: "Mixed Case", name: 'we"ird' },
  source: { schema: "public", name: "t" },
  columns: [column("Id", "integer", { notNull: true }), column('a"b', "text")],
  withSid: false,
  history: false,
  sourceKey: ["Id"],
  primaryKey: ["Id"],
  partitionBy: null,
  partitions: [],
  ...more,
});

Deno.test("CREATE TABLE quotes odd identifiers", () => {
  assert.equal(
    createTableDdl(table()),
    `CREATE TABLE "Mixed Case"."we""ird" (\n  "Id" integer NOT NULL,\n  "a""b" text,\n  PRIMARY KEY ("Id")\n)`,
  );
});

Deno.test("CREATE TABLE with sid, history columns, identity, generated and defaults", () => {
  const ddl = createTableDdl(
    table({
      withSid: true,
      history: true,
      primaryKey: [],
      columns: [
        column("id", "bigint", {
          notNull: true,
          identity: {
            kind: "a",
            lastValue: "7",
            options: {
              dataType: "bigint",
              start: "1",
              increment: "1",
              min: "1",
              max: "9223372036854775807",
              cache: "1",
              cycle: false,
            },
          },
        }),
        column("n", "integer", { default: "nextval('public.s'::regclass)" }),
        column("d", "integer", { generated: { expression: "(n * 2)", kind: "s" } }),
        column("f", "text", { default: "public.f()" }),
      ],
    }),
    { withoutDefault: new Set(["f"]) },
  );
  assert.equal(
    ddl,
    `CREATE TABLE "Mixed Case"."we""ird" (\n  sid text NOT NULL,\n` +
      `  "id" bigint GENERATED ALWAYS AS IDENTITY (START WITH 1 INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 CACHE 1 NO CYCLE) NOT NULL,\n` +
      `  "n" integer DEFAULT nextval('public.s'::regclass),\n` +
      `  "d" integer GENERATED ALWAYS AS ((n * 2)) STORED,\n` +
      `  "f" text,\n` +
      `  kvsz_start timestamptz NOT NULL,\n  kvsz_end timestamptz NOT NULL,\n  kvsz_deleted boolean NOT NULL\n)`,
  );
});

Deno.test("types: enum labels are literals, composite attributes identifiers", () => {
  assert.equal(
    createTypeDdl({ kind: "enum", type: { schema: "s", name: "Mood" }, labels: ["it's", "ok"] }),
    `CREATE TYPE "s"."Mood" AS ENUM ('it''s', 'ok')`,
  );
  assert.equal(
    createTypeDdl({
      kind: "composite",
      type: { schema: "public", name: "p" },
      attributes: [{ name: 'x"', type: "integer" }],
    }),
    `CREATE TYPE "public"."p" AS ("x""" integer)`,
  );
  assert.equal(
    createTypeDdl({
      kind: "domain",
      type: { schema: "public", name: "pos" },
      baseType: "integer",
      collation: null,
      default: "1",
      notNull: true,
      checks: [["pos_check", "CHECK ((VALUE > 0))"]],
      functions: [],
    }),
    `CREATE DOMAIN "public"."pos" AS integer DEFAULT 1 NOT NULL CONSTRAINT "pos_check" CHECK ((VALUE > 0))`,
  );
});

Deno.test("partitions", () => {
  assert.equal(
    createPartitionDdl({
      table: { schema: "Mixed Case", name: "p 2024" },
      parent: { schema: "Mixed Case", name: 'we"ird' },
      bound: "FOR VALUES FROM (2024) TO (2025)",
      partitionBy: "LIST (k)",
    }),
    `CREATE TABLE "Mixed Case"."p 2024" PARTITION OF "Mixed Case"."we""ird" FOR VALUES FROM (2024) TO (2025) PARTITION BY LIST (k)`,
  );
});

Deno.test("a source index moves to its target, sid first when unique", () => {
  const target = { schema: "dst", name: "Mixed Case" };
  assert.equal(
    targetIndexDdl(
      `CREATE UNIQUE INDEX "we""ird idx" ON "Odd Schema"."T t" USING btree (email) WHERE (x > 0)`,
      target,
      { name: 'we"ird idx', withSid: true },
    ),
    `CREATE UNIQUE INDEX "we""ird idx" ON "dst"."Mixed Case" USING btree (sid, email) WHERE (x > 0)`,
  );
  assert.equal(
    targetIndexDdl(`CREATE INDEX i ON ONLY public.t USING gin (tags)`, target, {
      name: "i",
      withSid: true,
    }),
    `CREATE INDEX "i" ON "dst"."Mixed Case" USING gin (tags)`,
  );
  assert.equal(targetIndexDdl("something else", target, { name: "i", withSid: false }), null);
});

Deno.test("constraints: sid in unique keys, foreign keys deferrable", () => {
  assert.equal(constraintWithSid("UNIQUE (a, b)"), "UNIQUE (sid, a, b)");
  assert.equal(
    constraintWithSid("UNIQUE NULLS NOT DISTINCT (a)"),
    "UNIQUE NULLS NOT DISTINCT (sid, a)",
  );
  assert.equal(constraintWithSid("CHECK ((a > 0))"), "CHECK ((a > 0))");
  assert.equal(
    foreignKeyDef({
      columns: ["Parent Id"],
      references: { schema: "public", name: 'we"ird' },
      referencedColumns: ["id"],
      match: "s",
      onUpdate: "a",
      onDelete: "c",
      withSid: true,
    }),
    `FOREIGN KEY ("sid", "Parent Id") REFERENCES "public"."we""ird" ("sid", "id") ON UPDATE NO ACTION ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED`,
  );
});

Deno.test("a trigger moves to its target", () => {
  assert.equal(
    targetTriggerDdl(
      `CREATE TRIGGER "My trg" BEFORE INSERT OR UPDATE OF a ON "Odd"."we""ird" FOR EACH ROW EXECUTE FUNCTION public.f()`,
      { schema: "dst", name: "t" },
    ),
    `CREATE TRIGGER "My trg" BEFORE INSERT OR UPDATE OF a ON "dst"."t" FOR EACH ROW EXECUTE FUNCTION public.f()`,
  );
});

Deno.test("names are cut to 63 bytes before their suffix", () => {
  const name = objectName("x".repeat(70), "_kvsz_current");
  assert.equal(name.length, 63);
  assert.ok(name.endsWith("_kvsz_current"));
});
