/**
 * The reverse stream of `kvsz switchover --reverse`: once the destination
 * (the new primary) takes the writes, `kvsz run` with a reverse config
 * streams its changes back into the source (the old primary), so that a
 * rollback loses nothing.
 *
 * Before the fence, the reverse publication and slot are made on the
 * destination, and schema `kvsz` in the old primary. Before the destination is declared ready, the old primary
 * gets the reverse source's `kvsz.progress` and `kvsz.synced_tables` rows at
 * the destination's current position (every table "copied" there: the old
 * primary holds the same rows), so the reverse `kvsz run` copies nothing and
 * streams every change made after it; and the forward stream is stopped (see
 * {@link refuseReversedSource}), so that nothing the reverse stream writes
 * into the old primary comes back. The reverse config's destination is the
 * old primary with `override_read_only`: its writer sessions pass the fence,
 * every other client stays fenced.
 */
import { dirname, join } from "node:path";
import { stringify } from "yaml";
import type { Sql } from "../pg/connect.ts";
import { type Config, type SourceUrl, type TableMapping, targetSchemaOf } from "../config/types.ts";
import { rawField, readRawConfig } from "../config/raw.ts";
import { kvszObjectName, qualify } from "../pg/identifiers.ts";
import { parseLsn } from "../pg/lsn.ts";
import { NeedsPersonError } from "../errors.ts";
import { ensureKvszSchema } from "../apply/progress.ts";
import { textArray } from "../apply/text_array.ts";
import { resolveTables } from "../source/tables.ts";
import { syncPublication } from "../source/publication.ts";
import { readSlot } from "../source/slot.ts";
import { readSourceTable } from "../source/catalog.ts";
import { readInventory } from "../source/all_tables.ts";
import { fencedDatabaseOf, isFenced } from "./fence.ts";
import { reverseConfigOf } from "./switchover_record.ts";

/** The reverse stream of one switched-over source. */
export interface ReverseStream {
  /** The reverse config's database entry and sid (the forward's database with `_reverse`, same sid). */
  key: { database: string; sid: string };
  /** Its publication and slot on the destination. */
  slot: string;
  /** Each table of the forward stream, from the destination back to the same table. */
  mappings: TableMapping[];
  /** Where the reverse config is written. */
  configPath: string;
}

/**
 * The reverse stream of `source` of `config` (entry `database`), or the
 * reasons there can be none: every table carried to the same schema and name
 * in mode clone (what `all_tables` maps), from a source listed in `urls`.
 */
export function planReverse(
  config: Config,
  target: { db: Config["databases"][number]; source: SourceUrl },
): ReverseStream | string[] {
  const problems: string[] = [];
  if (target.source.discovered) {
    problems.push(
      `a discovered source has no reverse stream: list its URL under urls to use --reverse`,
    );
  }
  for (const m of target.db.tables) {
    const to = `${targetSchemaOf(m, config.destination.schema)}.${m.target}`;
    if (to !== `${m.sourceSchema}.${m.sourceName}` || m.partitionsRegex !== undefined) {
      problems.push(
        `table ${m.sourceSchema}.${m.sourceName} goes to ${to}${
          m.partitionsRegex ? ` with partitions_regex` : ""
        }: --reverse needs every table carried to the same schema and name (as all_tables does)`,
      );
    } else if (m.mode !== "clone") {
      problems.push(
        `table ${m.sourceSchema}.${m.sourceName} is in mode ${m.mode}: --reverse needs mode clone`,
      );
    }
  }
  if (problems.length > 0) return problems;
  const key = { database: `${target.db.database}_reverse`, sid: target.source.sid };
  return {
    key,
    slot: kvszObjectName(key.database, key.sid),
    mappings: target.db.tables.map((m) => ({ ...m, targetSchema: m.sourceSchema })),
    configPath: reverseConfigPath(config.file, target.db.database),
  };
}

/** `kvsz.yaml` → `kvsz.<database>.reverse.yaml`, beside it. */
function reverseConfigPath(file: string, database: string): string {
  const name = file.split("/").pop()!.replace(/\.ya?ml$/i, "");
  const safe = database.replace(/[^A-Za-z0-9_.-]/g, "_");
  return join(dirname(file), `${name}.${safe}.reverse.yaml`);
}

/**
 * What keeps the destination from being the reverse stream's source, one
 * sentence each: `wal_level`, the role's REPLICATION, a target with a `sid`
 * column (several sources' rows in one table cannot go back to one).
 */
export async function reverseServerProblems(dst: Sql, plan: ReverseStream): Promise<string[]> {
  const [row] = await dst.unsafe(
    `SELECT current_setting('wal_level') AS wal_level, current_user AS role,
            r.rolreplication OR r.rolsuper AS replication
       FROM pg_catalog.pg_roles r WHERE r.rolname = current_user`,
  );
  const problems: string[] = [];
  if (row.wal_level !== "logical") {
    problems.push(
      `the destination's wal_level is ${row.wal_level}: the reverse stream needs logical ` +
        `(ALTER SYSTEM SET wal_level = logical and restart the destination before the switchover)`,
    );
  }
  if (!row.replication) {
    problems.push(
      `role ${row.role} of the destination URL cannot stream from it: ALTER ROLE ${row.role} REPLICATION`,
    );
  }
  const withSid = await dst.unsafe(
    `SELECT n FROM unnest($1::text[]) n
      WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                     WHERE attrelid = to_regclass(n) AND attname = 'sid' AND NOT attisdropped)`,
    [textArray(plan.mappings.map((m) => qualify(m.sourceSchema, m.sourceName)))],
  );
  for (const t of withSid) {
    problems.push(`target ${t.n} has a sid column: --reverse carries one source's own tables`);
  }
  return problems;
}

/**
 * Makes the reverse publication and slot on the destination (kept when they
 * exist: a re-run), and schema `kvsz` in the old primary (`old`); returns the
 * slot's position. Before the fence: none of it costs write downtime.
 */
export async function createReverseSlot(
  { old, dst }: { old: Sql; dst: Sql },
  plan: ReverseStream,
  major: number,
): Promise<{ lsn: bigint; created: boolean }> {
  await ensureKvszSchema(old);
  const tables = await resolveTables(dst, plan.mappings, major);
  await syncPublication(dst, plan.slot, tables.flatMap((t) => t.published), { major });
  const slot = await readSlot(dst, plan.slot, major);
  if (slot) return { lsn: slot.confirmedFlushLsn ?? 0n, created: false };
  const [row] = await dst.unsafe(
    `SELECT lsn::text AS lsn FROM pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')`,
    [plan.slot],
  );
  return { lsn: parseLsn(row.lsn), created: true };
}

/**
 * Records in the old primary (`old`, a session that writes through the fence)
 * that the reverse source starts at the destination's current position with
 * every table in place, unless it already has a position (a re-run, or a
 * reverse stream that already runs); returns the recorded position.
 */
export async function recordReverseStart(
  old: Sql,
  dst: Sql,
  plan: ReverseStream,
): Promise<bigint> {
  const [{ lsn }] = await dst.unsafe(`SELECT pg_catalog.pg_current_wal_insert_lsn()::text AS lsn`);
  const columns = await Promise.all(plan.mappings.map(async (m) => ({
    source: (await readSourceTable(dst, m.sourceSchema, m.sourceName))?.columns ?? [],
    target: (await readSourceTable(old, m.sourceSchema, m.sourceName))?.columns ?? [],
  })));
  const missing = plan.mappings.filter((_, i) => columns[i].target.length === 0);
  if (missing.length > 0) {
    throw new Error(
      `table(s) ${missing.map((m) => `${m.sourceSchema}.${m.sourceName}`).join(", ")} ` +
        `missing on the source`,
    );
  }
  const { database, sid } = plan.key;
  return await old.begin(async (tx) => {
    await tx.unsafe(
      `INSERT INTO kvsz.progress (database, sid, commit_lsn, end_lsn)
       VALUES ($1, $2, '0/0', $3::pg_lsn) ON CONFLICT (database, sid) DO NOTHING`,
      [database, sid, lsn],
    );
    for (const [i, m] of plan.mappings.entries()) {
      await tx.unsafe(
        `INSERT INTO kvsz.synced_tables (database, sid, source_table, target, synced_lsn,
                                         source_columns, columns_lsn)
         VALUES ($1, $2, $3, $4, $5::pg_lsn, $6::text[], $5::pg_lsn)
         ON CONFLICT (database, sid, source_table) DO NOTHING`,
        [
          database,
          sid,
          `${m.sourceSchema}.${m.sourceName}`,
          m.sourceName,
          lsn,
          textArray(columns[i].source.map((c) => c.name)),
        ],
      );
    }
    const [row] = await tx.unsafe(
      `SELECT end_lsn::text AS lsn FROM kvsz.progress WHERE database = $1 AND sid = $2`,
      [database, sid],
    );
    return parseLsn(row.lsn);
  }) as bigint;
}

/**
 * Writes the reverse config (mode 0600): the forward config's settings as
 * written (`${VAR}` references kept), its destination URL as the source and
 * its source URL as the destination, every table of the forward stream by
 * `all_tables` (the destination's other tables in those schemas excluded).
 */
export async function writeReverseConfig(
  config: Config,
  target: { db: Config["databases"][number]; source: SourceUrl },
  opts: { plan: ReverseStream; dst: Sql },
): Promise<void> {
  const raw = await readRawConfig(config.file);
  const entry = raw.databases[config.databases.indexOf(target.db)];
  const urls = rawField(entry, "urls");
  const sourceUrl = rawField(
    Array.isArray(urls) ? urls[target.db.urls.indexOf(target.source)] : undefined,
    "url",
  );
  const destination = rawField(raw.settings, "destination");
  const destinationUrl = rawField(destination, "url");
  if (typeof sourceUrl !== "string" || typeof destinationUrl !== "string") {
    throw new Error(`cannot find the source's and the destination's url in ${config.file}`);
  }
  const { plan } = opts;
  const schemas = [...new Set(plan.mappings.map((m) => m.sourceSchema))].sort();
  const carried = new Set(plan.mappings.map((m) => `${m.sourceSchema}.${m.sourceName}`));
  const inventory = await readInventory(opts.dst, { schemas, exclude: [], mode: "clone" });
  const exclude = inventory.tables.map((t) => `${t.schema}.${t.name}`)
    .filter((t) => !carried.has(t));
  const document = {
    ...raw.settings,
    destination: {
      url: sourceUrl,
      replica_role: config.destination.replicaRole,
      override_read_only: true,
    },
    databases: [{
      database: plan.key.database,
      urls: [{ url: destinationUrl, sid: plan.key.sid }],
      all_tables: { schemas, ...(exclude.length > 0 ? { exclude } : {}) },
    }],
  };
  const header = [
    `# Written by kvsz switchover --reverse at ${new Date().toISOString()} from ${config.file}:`,
    `# streams the new primary (${target.db.database}'s destination) back into the old one.`,
    `#   kvsz run --config ${plan.configPath}     (once the forward kvsz run is stopped)`,
    `# Rollback: kvsz switchover --config ${plan.configPath}, then`,
    `#           kvsz switchover --abort --config ${config.file}`,
    "",
  ].join("\n");
  await Deno.writeTextFile(plan.configPath, header + stringify(document), { mode: 0o600 });
}

/**
 * Ends the forward stream's walsender (kvsz run reconnects, and then
 * {@link refuseReversedSource} stops it); returns whether one was running.
 */
export async function endForwardStream(src: Sql, slot: string): Promise<boolean> {
  const rows = await src.unsafe(
    `SELECT pg_catalog.pg_terminate_backend(active_pid) AS ended
       FROM pg_catalog.pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`,
    [slot],
  );
  return rows.length > 0;
}

/**
 * Refuses to stream a source switched over with `--reverse` while its
 * database stays fenced: the reverse stream writes into it, and streaming
 * those writes forward again would bring old values back to the new primary.
 * `src` is a session of the source, `dst` of the destination.
 */
export async function refuseReversedSource(
  src: Sql,
  dst: Sql,
  source: { database: string; sid: string; url: string },
): Promise<void> {
  const reverse = await reverseConfigOf(dst, source);
  if (reverse === null) return;
  const database = fencedDatabaseOf(source.url);
  if (!await isFenced(src, database)) return;
  throw new NeedsPersonError(
    `switched over with --reverse (kvsz.switchovers): kvsz run does not stream database ${database} ` +
      `while it stays fenced, the reverse stream writes into it — stop this kvsz run and run ` +
      `kvsz run --config ${reverse}; after kvsz switchover --abort it streams again`,
  );
}
