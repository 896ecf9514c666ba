/**
 * The reference of the `upgrade` scenario: PostgreSQL's native logical
 * replication of the same tables into an empty destination database whose
 * schema is made by kvsz's own lib/schema (the same statements kvsz runs
 * with `create_tables`: tables with their keys before the copy, indexes,
 * constraints, triggers and foreign keys after it), so both engines start
 * from the same catalog and end with the same schema. Timed from the schema
 * creation to the end of the after-copy statements; the subscription and its
 * slot are dropped afterwards.
 */
import { stringify } from "yaml";
import { parseConfig } from "../../lib/config/load.ts";
import { expandAllTables } from "../../lib/preflight/all_tables.ts";
import { createAfterCopy, createBeforeCopy } from "../../lib/schema/create.ts";
import { onCleanup } from "../cleanup.ts";
import type { Server } from "../servers.ts";
import { now, waitUntil } from "../util.ts";

const NAME = "upbench_native";

/** Seconds of each part of the native reference. */
export interface NativeTimes {
  schemaSeconds: number;
  copySeconds: number;
  afterCopySeconds: number;
  totalSeconds: number;
  tables: number;
}

/**
 * Copies `sourceDb` of `source` into `destDb` of `dest` (created empty here)
 * with a `FOR ALL TABLES` publication and a `copy_data` subscription.
 */
export async function nativeReference(
  source: Server,
  sourceDb: string,
  dest: Server,
  destDb: string,
  workDir: string,
): Promise<NativeTimes> {
  await dest.recreateDatabase(destDb);
  const path = `${workDir}/upgrade-native-schema.yaml`;
  const text = stringify({
    destination: { url: dest.url(destDb), create_tables: true },
    databases: [{
      database: sourceDb,
      urls: [{ url: source.url(sourceDb), sid: sourceDb }],
      all_tables: true,
    }],
    metrics: { listen: "" },
  });
  await Deno.writeTextFile(path, text);
  const t0 = now();
  const expanded = await expandAllTables(parseConfig(text, path), { connectTimeout: 10 });
  const failed = expanded.checks.filter((c) => c.status === "FAIL");
  if (failed.length) throw new Error(`all_tables: ${JSON.stringify(failed)}`);
  const plans = await createBeforeCopy(expanded.config);
  const t1 = now();
  const src = source.sql(sourceDb);
  await src.unsafe(`CREATE PUBLICATION ${NAME} FOR ALL TABLES`);
  const dst = dest.sql(destDb);
  const conn = source.url(sourceDb).replaceAll("'", "''");
  await dst.unsafe(
    `CREATE SUBSCRIPTION ${NAME} CONNECTION '${conn}' PUBLICATION ${NAME} WITH (copy_data = true)`,
  );
  const unregister = onCleanup(`subscription ${NAME}`, () => drop(source, sourceDb, dest, destDb));
  let tables = 0;
  try {
    await waitUntil(async () => {
      const [r] = await dst.unsafe(
        `SELECT count(*)::int AS n, count(*) FILTER (WHERE srsubstate <> 'r')::int AS pending
           FROM pg_subscription_rel`,
      );
      tables = r.n;
      return r.n > 0 && r.pending === 0;
    }, { what: "native: every pg_subscription_rel in state r", timeoutMs: 1_800_000 });
    const t2 = now();
    const plan = plans.get(sourceDb);
    if (plan) await createAfterCopy(dest.url(destDb), sourceDb, plan);
    const t3 = now();
    return {
      schemaSeconds: (t1 - t0) / 1000,
      copySeconds: (t2 - t1) / 1000,
      afterCopySeconds: (t3 - t2) / 1000,
      totalSeconds: (t3 - t0) / 1000,
      tables,
    };
  } finally {
    await drop(source, sourceDb, dest, destDb);
    unregister();
  }
}

/** Drops the subscription (and its slot), the publication and the destination database. */
async function drop(source: Server, sourceDb: string, dest: Server, destDb: string) {
  if (source.stopped || dest.stopped) return;
  await dest.sql(destDb).unsafe(`DROP SUBSCRIPTION IF EXISTS ${NAME}`);
  await source.sql(sourceDb).unsafe(`DROP PUBLICATION IF EXISTS ${NAME}`);
  await source.sql().unsafe(
    `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
      WHERE slot_name LIKE '${NAME}%' AND NOT active`,
  );
  await dest.close(destDb);
  await dest.sql().unsafe(`DROP DATABASE IF EXISTS "${destDb}" WITH (FORCE)`);
}
