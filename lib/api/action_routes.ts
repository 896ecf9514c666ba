/**
 * What kvsz does to a running source on request: pause it (its slot stays
 * and retains WAL), resume it, copy one of its tables again (the source
 * restarts; the others keep streaming), and drop its slot and publication
 * (refused while it streams: pause it first).
 */
import type { ApiContext } from "./context.ts";
import { ApiError, json, notFound, path, type Route, segment } from "./http.ts";
import { connect } from "../pg/connect.ts";
import { markTableForCopy } from "../apply/progress.ts";
import { sourceView } from "./source_view.ts";

/** The action routes. */
export function actionRoutes(ctx: ApiContext): Route[] {
  /** The source's database entry, or 404. */
  const entryOf = (database: string, sid: string) => {
    const db = ctx.sources().databases.find((d) =>
      d.database === database && d.urls.some((u) => u.sid === sid)
    );
    if (!db || ctx.control.stateOf(database, sid) === "absent") {
      throw notFound(`source ${database} sid ${sid}`);
    }
    return db;
  };
  const view = async (database: string, sid: string) =>
    json(await sourceView(ctx, database, sid) ?? { database, sid, state: "absent" });
  const action = (
    name: string,
    run: (database: string, sid: string, rest: string[]) => Promise<Response>,
  ): Route => ({
    method: "POST",
    pattern: path(`/api/source/{database}/{sid}/${name}`),
    kind: "action",
    handler: ([database, sid, ...rest]) => {
      const [db, s] = [segment(database), segment(sid)];
      entryOf(db, s);
      return run(db, s, rest.map(segment));
    },
  });
  return [
    action("pause", async (database, sid) => {
      await ctx.control.pause(database, sid);
      return await view(database, sid);
    }),
    action("resume", async (database, sid) => {
      if (!await ctx.control.resume(database, sid)) {
        throw new ApiError(409, "conflict", `source ${database} sid ${sid} is not paused`);
      }
      return await view(database, sid);
    }),
    action("drop", async (database, sid) => {
      if (ctx.control.stateOf(database, sid) === "running") {
        throw new ApiError(
          409,
          "conflict",
          `source ${database} sid ${sid} is streaming: pause it first ` +
            `(POST /api/source/${encodeURIComponent(database)}/${encodeURIComponent(sid)}/pause)`,
        );
      }
      const { ok, lines } = await ctx.dropSource(database, sid);
      if (!ok) throw new ApiError(409, "conflict", lines.join("; "));
      return json({ database, sid, dropped: lines });
    }),
    action("table/{table}/recopy", async (database, sid, [table]) => {
      const db = entryOf(database, sid);
      const mapping = db.tables.find((t) =>
        t.source === table || `${t.sourceSchema}.${t.sourceName}` === table
      );
      if (!mapping) throw notFound(`table ${table} of source ${database} sid ${sid}`);
      if (ctx.control.stateOf(database, sid) !== "running") {
        throw new ApiError(
          409,
          "conflict",
          `source ${database} sid ${sid} is paused: resume it first`,
        );
      }
      await ctx.control.restart(database, sid, async () => {
        const dest = connect(ctx.config().destination.url, { connectTimeout: 10 });
        try {
          await markTableForCopy(dest, { database, sid, sourceTable: mapping.source });
        } finally {
          await dest.end({ timeout: 2 }).catch(() => {});
        }
      });
      return await view(database, sid);
    }),
  ];
}
