/**
 * Sequences at a switchover: logical replication carries no sequence, so the
 * destination's are set from the source's (fenced) state, owned by a column
 * or not, then read back and compared.
 */
import type { Sql } from "../pg/connect.ts";
import type { Config, TableMapping } from "../config/types.ts";
import { targetSchemaOf } from "../config/types.ts";
import { qualify } from "../pg/identifiers.ts";

/** One sequence of the source and its state. */
export interface SequenceState {
  schema: string;
  name: string;
  /** `last_value` as text (int8 survives). */
  lastValue: string;
  isCalled: boolean;
  /** The table column owning it (serial, identity, OWNED BY), if any. */
  owner: { schema: string; table: string; column: string } | null;
}

/** How source sequences find theirs at the destination: the config and the source's table mappings. */
export interface SequenceMap {
  config: Config;
  /** The source's mapped tables (`all_tables` expanded). */
  mappings: TableMapping[];
}

/** What {@link copySequences} did. */
export interface SequenceCopy {
  /** Sequences set at the destination and read back equal. */
  copied: number;
  /** Source sequences the destination lacks, as `schema.name`. */
  missing: string[];
  /** Sequences read back different from the source, with both states. */
  mismatched: string[];
}

/** Reads every sequence of the database `sql` is connected to (pg_sequences, PostgreSQL 10+). */
export async function readSequences(sql: Sql): Promise<SequenceState[]> {
  const rows = await sql.unsafe(
    `SELECT s.schemaname AS schema, s.sequencename AS name,
            o.table_schema, o.table_name, o.column_name
       FROM pg_catalog.pg_sequences s
       LEFT JOIN LATERAL (
         SELECT tn.nspname AS table_schema, t.relname AS table_name, a.attname AS column_name
           FROM pg_catalog.pg_depend d
           JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
           JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
           JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
          WHERE d.classid = 'pg_catalog.pg_class'::regclass
            AND d.objid = format('%I.%I', s.schemaname, s.sequencename)::regclass
            AND d.refclassid = 'pg_catalog.pg_class'::regclass
            AND d.deptype IN ('a', 'i')
          LIMIT 1) o ON true
      ORDER BY 1, 2`,
  );
  const states: SequenceState[] = [];
  for (const r of rows) {
    const [state] = await sql.unsafe(
      `SELECT last_value::text AS last_value, is_called FROM ${qualify(r.schema, r.name)}`,
    );
    states.push({
      schema: r.schema,
      name: r.name,
      lastValue: state.last_value,
      isCalled: state.is_called,
      owner: r.table_name
        ? { schema: r.table_schema, table: r.table_name, column: r.column_name }
        : null,
    });
  }
  return states;
}

/**
 * The destination sequence of a source one: for a sequence owned by a column
 * of a mapped table, the sequence owning that column of its target (found
 * with `pg_get_serial_sequence`); otherwise the same schema and name.
 */
async function destinationSequence(
  dst: Sql,
  seq: SequenceState,
  where: SequenceMap,
): Promise<string | null> {
  const mapping = seq.owner &&
    where.mappings.find((m) =>
      m.sourceSchema === seq.owner!.schema && m.sourceName === seq.owner!.table
    );
  if (mapping) {
    const target = qualify(
      targetSchemaOf(mapping, where.config.destination.schema),
      mapping.target,
    );
    const [row] = await dst.unsafe(
      `SELECT CASE WHEN to_regclass($1) IS NOT NULL
                   THEN pg_catalog.pg_get_serial_sequence($1, $2) END AS seq`,
      [target, seq.owner!.column],
    );
    if (row.seq) return row.seq;
  }
  const name = qualify(seq.schema, seq.name);
  const [row] = await dst.unsafe(
    `SELECT c.oid IS NOT NULL AS found
       FROM (SELECT to_regclass($1) AS oid) r
       LEFT JOIN pg_catalog.pg_class c ON c.oid = r.oid AND c.relkind = 'S'`,
    [name],
  );
  return row.found ? name : null;
}

/**
 * Sets every sequence of `src` at `dst` (`setval(seq, last_value, is_called)`,
 * idempotent), then reads each back and compares. Sequences the destination
 * lacks are reported, not created.
 */
export async function copySequences(
  src: Sql,
  dst: Sql,
  where: SequenceMap,
): Promise<SequenceCopy> {
  const result: SequenceCopy = { copied: 0, missing: [], mismatched: [] };
  for (const seq of await readSequences(src)) {
    const target = await destinationSequence(dst, seq, where);
    if (target === null) {
      result.missing.push(`${seq.schema}.${seq.name}`);
      continue;
    }
    await dst.unsafe(`SELECT pg_catalog.setval($1::regclass, $2::int8, $3)`, [
      target,
      seq.lastValue,
      seq.isCalled,
    ]);
    const [back] = await dst.unsafe(
      `SELECT last_value::text AS last_value, is_called FROM ${target}`,
    );
    if (back.last_value === seq.lastValue && back.is_called === seq.isCalled) {
      result.copied++;
    } else {
      result.mismatched.push(
        `${target}: source (${seq.lastValue}, is_called ${seq.isCalled}), destination (${back.last_value}, is_called ${back.is_called})`,
      );
    }
  }
  return result;
}
