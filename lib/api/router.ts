/**
 * The API's routes on the metrics listener: kuvasz-streamer's resources
 * (`/api/db`, `/api/url`, `/api/tbl`, `/api/map`) and kvsz's own
 * (`/api/source`, its actions, `/api/changes`), and the console at `/console`
 * (`/` leads there). Checks the token first; in
 * declarative mode answers 405 to a change of the map, as kuvasz does.
 */
import { log } from "../log.ts";
import type { ApiAuth } from "./auth.ts";
import type { ApiContext } from "./context.ts";
import { ApiError, errorResponse, type Route } from "./http.ts";
import { readRoutes } from "./read_routes.ts";
import { actionRoutes } from "./action_routes.ts";
import { writeRoutes } from "./write_routes.ts";
import { CONSOLE_HTML } from "./console_page.ts";

/**
 * A handler for the listener: answers `/api/...`, null for any other path.
 * With `auth.disabledReason`, every API path answers 404 saying why.
 */
export function apiHandler(
  ctx: ApiContext,
  auth: ApiAuth,
): (request: Request) => Promise<Response | null> {
  const routes: Route[] = [...readRoutes(ctx), ...writeRoutes(ctx), ...actionRoutes(ctx)];
  const logger = log("api");
  return async (request) => {
    const url = new URL(request.url);
    const console = url.pathname === "/console" || url.pathname === "/console/";
    if (url.pathname === "/" && !auth.disabledReason) {
      return new Response(null, { status: 303, headers: { location: "/console" } });
    }
    if (!console && url.pathname !== "/api" && !url.pathname.startsWith("/api/")) return null;
    try {
      if (auth.disabledReason) throw new ApiError(404, "api_disabled", auth.disabledReason);
      if (console) return consolePage();
      const matching = routes.filter((r) => r.pattern.test(url.pathname));
      if (matching.length === 0) throw new ApiError(404, "not_found", `no route ${url.pathname}`);
      const method = request.method === "HEAD" ? "GET" : request.method;
      const route = matching.find((r) => r.method === method);
      const write = route?.kind !== "read";
      const allowed = auth.check(request.headers.get("authorization"), write);
      if (!allowed.ok) throw new ApiError(allowed.status, allowed.code, allowed.message);
      if (!route) {
        const allow = [...new Set(matching.map((r) => r.method))].join(", ");
        return errorResponse(
          new ApiError(
            405,
            "method_not_allowed",
            `${method} is not allowed here (allowed: ${allow})`,
          ),
          { allow },
        );
      }
      if (route.kind === "map" && ctx.store === null) {
        throw new ApiError(
          405,
          "not_allowed",
          "cannot modify configuration in declarative mode: the map is the config file's " +
            "(edit it and send SIGHUP, or set map_store: destination)",
        );
      }
      const params = route.pattern.exec(url.pathname)!.slice(1);
      const response = await route.handler(params, request, allowed.identity);
      if (write) {
        logger.info("{who}: {method} {path}: {status}", {
          who: allowed.identity,
          method,
          path: url.pathname,
          status: response.status,
        });
      }
      return response;
    } catch (e) {
      if (e instanceof ApiError) return errorResponse(e);
      logger.error("{method} {path}: {error}", {
        method: request.method,
        path: url.pathname,
        error: (e as Error).message,
      });
      return errorResponse(new ApiError(500, "internal_error", (e as Error).message));
    }
  };
}

/** The console's page: the data comes from the API with the token the page asks for. */
function consolePage(): Response {
  return new Response(CONSOLE_HTML, {
    headers: {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      "content-security-policy":
        "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
      "x-content-type-options": "nosniff",
    },
  });
}
