/**
 * The API's `create` (and `clone` of a table whose target is missing): the
 * destination table made by the schema creator from the source's columns and
 * key, with `sid` when the entry has several sources, `kvsz_start`,
 * `kvsz_end` and `kvsz_deleted` plus the recommended indexes for a history
 * target. The table is empty, so its indexes are made at once.
 */
import type { Config, DatabaseMapping, TableMapping } from "../config/types.ts";
import { connect } from "../pg/connect.ts";
import { createAfterCopy, createTables, readEntrySchema } from "../schema/create.ts";

/** Creates the target of `mapping` (of entry `db`) and what it needs; false when no source is listed. */
export async function createTarget(
  config: Config,
  db: DatabaseMapping,
  mapping: TableMapping,
): Promise<boolean> {
  const entry = { ...db, tables: [mapping] };
  const plan = await readEntrySchema(config, entry);
  if (!plan) return false;
  const dest = connect(config.destination.url, { connectTimeout: 10 });
  try {
    await createTables(dest, plan);
  } finally {
    await dest.end({ timeout: 2 }).catch(() => {});
  }
  await createAfterCopy(config.destination.url, db.database, plan);
  return true;
}
