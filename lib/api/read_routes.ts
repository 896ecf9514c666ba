/**
 * The API's reads: kuvasz-streamer's `db`, `url`, `tbl` and `map` lists and
 * items (URLs without their password), kvsz's sources with their state,
 * lag, WAL, copy progress and anomalies, and database mode's change log.
 */
import type { ApiContext } from "./context.ts";
import { json, notFound, parseId, path, type Route, segment } from "./http.ts";
import { type MapRows, publicTbl, publicUrl } from "./map_rows.ts";
import { readTableMap } from "./table_map.ts";
import { sourceView, sourceViews } from "./source_view.ts";

/** The served form of each kuvasz resource's rows. */
const RESOURCES = {
  db: (rows: MapRows) => rows.dbs.map((d) => ({ id: d.id, name: d.name })),
  url: (rows: MapRows) => rows.urls.map(publicUrl),
  tbl: (rows: MapRows) => rows.tbls.map(publicTbl),
};

/** Row `id` of resource `kind` as served (after a change). */
export async function servedRow(ctx: ApiContext, kind: keyof typeof RESOURCES, id: number) {
  return RESOURCES[kind](await ctx.rows()).find((r) => r.id === id) ?? { id };
}

/** The read routes. */
export function readRoutes(ctx: ApiContext): Route[] {
  const routes: Route[] = [];
  for (const [name, serve] of Object.entries(RESOURCES)) {
    routes.push(
      {
        method: "GET",
        pattern: path(`/api/${name}`),
        kind: "read",
        handler: async () => json(serve(await ctx.rows())),
      },
      {
        method: "GET",
        pattern: path(`/api/${name}/{id}`),
        kind: "read",
        handler: async ([id]) => {
          const wanted = parseId(id);
          const item = serve(await ctx.rows()).find((r) => r.id === wanted);
          if (!item) throw notFound(`${name} ${wanted}`);
          return json(item);
        },
      },
    );
  }
  routes.push(
    {
      method: "GET",
      pattern: path("/api/map"),
      kind: "read",
      handler: async () => json(await readTableMap(ctx.config(), await ctx.rows())),
    },
    {
      method: "GET",
      pattern: path("/api/map/{id}"),
      kind: "read",
      handler: async ([id]) => {
        const wanted = parseId(id);
        const map = await readTableMap(ctx.config(), await ctx.rows());
        const entry = map.find((e) => e.id === wanted);
        if (!entry) throw notFound(`map entry ${wanted}`);
        return json(entry);
      },
    },
    {
      method: "GET",
      pattern: path("/api/source"),
      kind: "read",
      handler: async () => json(await sourceViews(ctx)),
    },
    {
      method: "GET",
      pattern: path("/api/source/{database}/{sid}"),
      kind: "read",
      handler: async ([database, sid]) => {
        const [db, s] = [segment(database), segment(sid)];
        const view = await sourceView(ctx, db, s);
        if (!view) throw notFound(`source ${db} sid ${s}`);
        return json(view);
      },
    },
    {
      method: "GET",
      pattern: path("/api/changes"),
      kind: "read",
      handler: async () => json(ctx.store ? await ctx.store.changes() : []),
    },
  );
  return routes;
}
