/**
 * Database mode's changes of the map, at kuvasz-streamer's paths: create,
 * update and delete `db`, `url` and `tbl` rows; `map/{id}/create` (make a
 * source table's target), `map/{id}/clone` (make it if missing, then map the
 * table), `map/refresh`. Each change is checked by the config validator
 * before it commits, logged with who made it, and applied as a reload does:
 * the sources it does not touch keep streaming.
 */
import type { ApiContext } from "./context.ts";
import { ApiError, json, notFound, parseId, path, readBody, type Route } from "./http.ts";
import type { MapRows, TblRow, UrlRow } from "./map_rows.ts";
import type { MapTx } from "./map_store.ts";
import { configWithMap } from "./map_config.ts";
import { type MapEntry, readTableMap } from "./table_map.ts";
import { createTarget } from "./create_target.ts";
import { ConfigError } from "../config/errors.ts";
import { interpolate } from "../config/interpolate.ts";
import { servedRow } from "./read_routes.ts";
import type { TableMapping, TableMode } from "../config/types.ts";
import { TABLE_MODES } from "../config/validate.ts";

type Kind = "db" | "url" | "tbl";

/** The body fields each resource accepts, and whether a creation requires them. */
const FIELDS: Record<
  Kind,
  Record<string, { type: "string" | "number" | "boolean"; required?: boolean }>
> = {
  db: { name: { type: "string", required: true } },
  url: {
    db_id: { type: "number", required: true },
    sid: { type: "string", required: true },
    url: { type: "string", required: true },
    failover: { type: "boolean" },
  },
  tbl: {
    db_id: { type: "number", required: true },
    name: { type: "string", required: true },
    type: { type: "string" },
    target: { type: "string" },
    partitions_regex: { type: "string" },
    on_column_drift: { type: "string" },
  },
};

/** The fields of `body` for `kind` (all required ones when `creating`), or 400 naming the wrong one. */
function fields(kind: Kind, body: Record<string, unknown>, creating: boolean) {
  const out: Record<string, string | number | boolean | null> = {};
  for (const [name, spec] of Object.entries(FIELDS[kind])) {
    const value = body[name];
    if (value === undefined || (value === null && !spec.required)) {
      if (creating && spec.required) {
        throw new ApiError(400, "invalid_body", `${kind}: "${name}" is required`);
      }
      if (value === null) out[name] = null;
      continue;
    }
    if (typeof value !== spec.type || value === "") {
      throw new ApiError(
        400,
        "invalid_body",
        `${kind}: "${name}" must be a non-empty ${spec.type}`,
      );
    }
    out[name] = value as string | number | boolean;
  }
  if (!creating) delete out.db_id;
  return out;
}

/** The map-changing routes (405 in declarative mode, see router.ts). */
export function writeRoutes(ctx: ApiContext): Route[] {
  const store = () => ctx.store!;
  /** Runs a change of the map, checked, logged, then applied. */
  const change = async <T>(who: string, what: string, run: (tx: MapTx) => Promise<T>) => {
    let result: T;
    try {
      result = await store().change(who, what, run, (rows) => check(ctx, rows));
    } catch (e) {
      throw storeError(e);
    }
    try {
      await ctx.reload();
    } catch (e) {
      throw new ApiError(
        500,
        "not_applied",
        `the map was changed (see /api/changes) but not applied: ${(e as Error).message}; ` +
          "kvsz runs the map it had until the next reload (SIGHUP, /api/map/refresh or a change)",
      );
    }
    return result;
  };
  const routes: Route[] = [];
  for (const kind of ["db", "url", "tbl"] as const) {
    routes.push(
      {
        method: "POST",
        pattern: path(`/api/${kind}`),
        kind: "map",
        handler: async (_, request, who) => {
          const values = withDefaults(kind, fields(kind, await readBody(request), true));
          const create = new URL(request.url).searchParams.get("create");
          if (
            kind === "tbl" &&
            (create === "true" || (create === null && ctx.config().destination.createTables))
          ) {
            await createIfMissing(values as unknown as NewTbl);
          }
          const id = await change(
            who,
            `create ${kind}`,
            (tx) =>
              kind === "db"
                ? tx.addDb(values as unknown as { name: string })
                : kind === "url"
                ? tx.addUrl(values as unknown as NewUrl)
                : tx.addTbl(values as unknown as NewTbl),
          );
          return json(await servedRow(ctx, kind, id));
        },
      },
      {
        method: "PUT",
        pattern: path(`/api/${kind}/{id}`),
        kind: "map",
        handler: async ([text], request, who) => {
          const id = parseId(text);
          const values = fields(kind, await readBody(request), false);
          await change(who, `update ${kind} ${id}`, async (tx) => {
            if (!await tx.update(kind, id, values as Record<string, string>)) {
              throw notFound(`${kind} ${id}`);
            }
            return { id, fields: Object.keys(values) };
          });
          return json(await servedRow(ctx, kind, id));
        },
      },
      {
        method: "DELETE",
        pattern: path(`/api/${kind}/{id}`),
        kind: "map",
        handler: async ([text], _, who) => {
          const id = parseId(text);
          await change(who, `delete ${kind} ${id}`, async (tx) => {
            if (!await tx.delete(kind, id)) throw notFound(`${kind} ${id}`);
            return { id };
          });
          return json({ id });
        },
      },
    );
  }
  /** Map entry `text`, with the whole map it was found in. */
  const entry = async (text: string): Promise<[MapEntry, MapEntry[]]> => {
    const id = parseId(text);
    const map = await readTableMap(ctx.config(), await ctx.rows());
    const found = map.find((e) => e.id === id);
    if (!found) throw notFound(`map entry ${id}`);
    return [found, map];
  };
  /** Creates the target of a map entry with `mode` and `target`. */
  const create = async (e: MapEntry, mode: TableMode, target: string) => {
    const config = ctx.config();
    const rows = await ctx.rows();
    // An entry without tables yet is not in the config: its URLs are the store's.
    const db = config.databases.find((d) => d.database === e.db_name) ?? {
      database: e.db_name,
      urls: rows.urls.filter((u) => u.db_id === e.db_id).map((u) => ({
        url: interpolate(u.url, Deno.env.toObject()).value,
        sid: u.sid,
        failover: false,
      })),
      tables: [],
    };
    const mapping: TableMapping = {
      source: sourceName(e),
      sourceSchema: e.schema,
      sourceName: e.name,
      target,
      mode,
      onColumnDrift: config.apply.onColumnDrift,
    };
    if (!await createTarget(config, db, mapping)) {
      throw new ApiError(
        409,
        "conflict",
        `database ${e.db_name} lists no URL to read ${e.name} from`,
      );
    }
  };
  /** Creates the target of a table about to be added, when it is missing. */
  const createIfMissing = async (t: NewTbl) => {
    const map = await readTableMap(ctx.config(), await ctx.rows());
    const e = map.find((m) => m.db_id === t.db_id && sourceName(m) === t.name);
    if (!e) {
      throw new ApiError(
        400,
        "invalid_body",
        `tbl: no table ${t.name} at the source of db ${t.db_id}`,
      );
    }
    if (!presentTarget(map, e, t.target)) await create(e, modeOf(t.type), t.target);
  };
  const refreshed = async (e: MapEntry) =>
    (await readTableMap(ctx.config(), await ctx.rows())).find((m) =>
      m.db_id === e.db_id && m.schema === e.schema && m.name === e.name
    ) ?? e;
  routes.push(
    {
      method: "POST",
      pattern: path("/api/map/refresh"),
      kind: "map",
      handler: async () => {
        await ctx.reload();
        return json(await readTableMap(ctx.config(), await ctx.rows()));
      },
    },
    {
      method: "POST",
      pattern: path("/api/map/{id}/create"),
      kind: "map",
      handler: async ([text], request, who) => {
        const [e] = await entry(text);
        if (e.present) {
          throw new ApiError(
            409,
            "conflict",
            `destination table ${e.target || e.name} already present`,
          );
        }
        const q = new URL(request.url).searchParams;
        const [mode, target] = [
          modeOf(q.get("type") ?? (e.type || "clone")),
          q.get("target") || e.target || e.name,
        ];
        await create(e, mode, target);
        // The map is unchanged, but the destination is: the change log says so too.
        await change(
          who,
          `create target of map ${e.id}`,
          () => Promise.resolve({ database: e.db_name, table: sourceName(e), target, type: mode }),
        );
        return json(await refreshed(e));
      },
    },
    {
      method: "POST",
      pattern: path("/api/map/{id}/clone"),
      kind: "map",
      handler: async ([text], request, who) => {
        const [e, map] = await entry(text);
        if (e.replicated) {
          throw new ApiError(
            409,
            "conflict",
            `table ${sourceName(e)} of ${e.db_name} is already replicated`,
          );
        }
        const q = new URL(request.url).searchParams;
        const mode = modeOf(q.get("type") || "clone");
        const target = q.get("target") || e.name;
        const regex = q.get("partitions_regex") || null;
        if (!presentTarget(map, e, target)) await create(e, mode, target);
        await change(who, `clone map ${e.id}`, async (tx) => {
          const row = {
            db_id: e.db_id,
            name: sourceName(e),
            type: mode,
            target,
            partitions_regex: regex,
          };
          return { id: await tx.addTbl(row), ...row };
        });
        return json(await refreshed(e));
      },
    },
  );
  return routes;
}

/** A new URL row, a new table row. */
type NewUrl = Omit<UrlRow, "id">;
type NewTbl = Omit<TblRow, "id">;

/** A created row's defaults: a table's type `clone` and target its name; no failover. */
function withDefaults(kind: Kind, values: Record<string, string | number | boolean | null>) {
  if (kind === "tbl") {
    const name = String(values.name);
    return {
      type: "clone",
      target: name.slice(name.lastIndexOf(".") + 1),
      partitions_regex: null,
      ...values,
    };
  }
  return kind === "url" ? { failover: false, ...values } : values;
}

/** Whether the target `target` of map entry `e`'s database exists at the destination. */
function presentTarget(map: MapEntry[], e: MapEntry, target: string): boolean {
  return map.some((m) => m.db_id === e.db_id && m.present && (m.target || m.name) === target);
}

/** The name a map entry's table is mapped under: `table` in `public`, else `schema.table`. */
function sourceName(e: MapEntry): string {
  return e.schema === "public" ? e.name : `${e.schema}.${e.name}`;
}

function modeOf(text: string): TableMode {
  if (!(TABLE_MODES as readonly string[]).includes(text)) {
    throw new ApiError(
      400,
      "invalid_body",
      `type must be one of ${TABLE_MODES.join(", ")}, not "${text}"`,
    );
  }
  return text as TableMode;
}

/** Refuses a map the validator would refuse in a config file, saying why. */
function check(ctx: ApiContext, rows: MapRows): void {
  try {
    configWithMap(ctx.config().file, rows);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    const problems = e.details.map((p) => `${p.path ? `${p.path}: ` : ""}${p.message}`);
    throw new ApiError(400, "invalid_map", `the map would not be valid: ${problems.join("; ")}`);
  }
}

/** A constraint of the store broken by a change, as the API's answer. */
function storeError(e: unknown): unknown {
  const code = (e as { code?: string }).code;
  if (code === "23505") {
    return new ApiError(409, "conflict", `already exists: ${(e as Error).message}`);
  }
  if (code === "23503") {
    return new ApiError(
      409,
      "conflict",
      "still referenced, or refers to a database that does not exist: delete its urls and tables first, " +
        "or give an existing db_id",
    );
  }
  return e;
}
