/**
 * The API's HTTP vocabulary: JSON answers (a list carries kuvasz-streamer's
 * `X-Total-Count`), errors as kuvasz's `{code, error}` bodies, ids and bodies
 * read with a clear 400 when malformed.
 */
import { maskSecrets } from "../log.ts";

/** An answer other than success, thrown by a handler. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** A JSON answer; a list gets `X-Total-Count`. */
export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  const h: Record<string, string> = {
    "content-type": "application/json; charset=utf-8",
    "cache-control": "no-store",
    ...headers,
  };
  if (Array.isArray(body)) h["x-total-count"] = String(body.length);
  return new Response(JSON.stringify(body) + "\n", { status, headers: h });
}

/** The error answer `{code, error}` of `e` (any password it quotes masked). */
export function errorResponse(e: ApiError, headers: Record<string, string> = {}): Response {
  return json({ code: e.code, error: maskSecrets(e.message) }, e.status, headers);
}

/** A path id as kuvasz reads it: a non-negative integer, else 400 `invalid_id`. */
export function parseId(text: string): number {
  if (!/^[0-9]{1,15}$/.test(text)) {
    throw new ApiError(
      400,
      "invalid_id",
      `invalid id "${text.slice(0, 40)}": a number is expected`,
    );
  }
  return Number(text);
}

/** A decoded path segment (a source's database or sid, a table); 400 when badly encoded. */
export function segment(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new ApiError(400, "invalid_id", `"${text.slice(0, 40)}" is not a valid URL path segment`);
  }
}

/** The JSON object of a request body, else 400 naming what is wrong. */
export async function readBody(request: Request): Promise<Record<string, unknown>> {
  let value: unknown;
  try {
    value = JSON.parse(await request.text());
  } catch (e) {
    throw new ApiError(400, "invalid_body", `the body is not JSON: ${(e as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new ApiError(400, "invalid_body", "the body must be a JSON object");
  }
  return value as Record<string, unknown>;
}

/** 404 `not_found` for `what`. */
export function notFound(what: string): ApiError {
  return new ApiError(404, "not_found", `${what} not found`);
}

/** What a route does: reads, changes the map (database mode only), or acts on a source. */
export type RouteKind = "read" | "map" | "action";

/** One route: a method, a path pattern whose groups are handed to the handler. */
export interface Route {
  method: "GET" | "POST" | "PUT" | "DELETE";
  pattern: RegExp;
  kind: RouteKind;
  handler: (params: string[], request: Request, who: string) => Promise<Response>;
}

/** The path pattern of `path`, `{x}` standing for one segment. */
export function path(template: string): RegExp {
  return new RegExp(`^${template.replace(/\{[a-z_]+\}/g, "([^/]+)")}/?$`);
}
