/**
 * One source TRUNCATE that named several tables (`TRUNCATE a, b`, or a
 * CASCADE the source expanded): written as one unit, since a table referenced
 * by a foreign key can be truncated only together with the tables referencing
 * it.
 */
import type { Sql } from "../pg/connect.ts";
import { applyCloneTruncate } from "./sql_clone.ts";
import { applyHistoryTruncate } from "./sql_history.ts";
import { routeShape, run } from "./sql_common.ts";
import type { TableRoute } from "./types.ts";
import { parentsFirst } from "./write_order.ts";

/**
 * Clone targets without sid in one TRUNCATE statement; clone targets with sid
 * by deleting the sid's rows, children first; history targets by closing
 * their current rows at `at`; append targets keep theirs. Returns the rows
 * written per route.
 */
export async function truncateTogether(
  tx: Sql,
  routes: TableRoute[],
  at: string,
): Promise<Map<TableRoute, number>> {
  const rows = new Map<TableRoute, number>();
  const whole = routes.filter((r) => r.mode === "clone" && !r.target.hasSid);
  if (whole.length > 0) {
    const tables = new Set(whole.map((r) => routeShape(r).table));
    await run(tx, `TRUNCATE ${[...tables].join(", ")}`, []);
    for (const r of whole) rows.set(r, 0);
  }
  const childrenFirst = parentsFirst(routes.map((r) => [r, r] as [TableRoute, TableRoute]))
    .reverse();
  for (const [r] of childrenFirst) {
    if (r.mode === "clone" && r.target.hasSid) {
      rows.set(r, (await applyCloneTruncate(tx, routeShape(r))).rows);
    } else if (r.mode === "history") {
      rows.set(r, (await applyHistoryTruncate(tx, routeShape(r), at)).rows);
    }
  }
  return rows;
}
