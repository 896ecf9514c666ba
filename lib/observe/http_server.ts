/**
 * The metrics and health endpoint: `GET /metrics` (Prometheus text format),
 * `GET /healthz` (the process is alive) and `GET /readyz` (every source
 * streaming, lag under the bound). Failing to listen never stops kvsz.
 */
import { log } from "../log.ts";
import type { Metrics, Readiness } from "./metrics.ts";

/** A running endpoint. */
export interface HttpServerHandle {
  /** Where it listens (the real port when `listen` asked for port 0). */
  readonly hostname: string;
  readonly port: number;
  /** Base URL, e.g. `http://127.0.0.1:9187`. */
  readonly url: string;
  /** Stops accepting connections and waits for requests in flight. */
  shutdown(): Promise<void>;
}

/** Options of {@link startHttpServer}. */
export interface HttpServerOptions {
  /**
   * Answers the paths it knows (the API, the console) before the endpoint's
   * own; null for the others.
   */
  handler?: (request: Request) => Promise<Response | null>;
}

/** Splits `host:port` (`[::1]:9187`, `:9187` = every interface) into Deno.serve's options. */
export function parseListen(listen: string): { hostname: string; port: number } {
  const match = /^(.*):([0-9]{1,5})$/.exec(listen);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535) {
    throw new Error(`metrics.listen "${listen}" is not host:port (e.g. 127.0.0.1:9187)`);
  }
  let hostname = match[1];
  if (hostname.startsWith("[") && hostname.endsWith("]")) hostname = hostname.slice(1, -1);
  return { hostname: hostname === "" ? "0.0.0.0" : hostname, port };
}

/**
 * Serves `/metrics`, `/healthz` and `/readyz` on `listen` (`host:port`).
 * Returns null without serving when `listen` is empty (turned off) or cannot
 * be bound (address in use: several kvsz may share a host), the latter with a
 * logged warning.
 */
export function startHttpServer(
  listen: string,
  metrics: Metrics,
  readiness: () => Readiness,
  opts: HttpServerOptions = {},
): HttpServerHandle | null {
  if (listen === "") return null;
  const logger = log("metrics");
  let address: { hostname: string; port: number };
  try {
    address = parseListen(listen);
  } catch (e) {
    logger.warn("metrics endpoint not started: {error}", { error: (e as Error).message });
    return null;
  }
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: address.hostname,
      port: address.port,
      onListen: () => {},
      onError: (error) => {
        logger.error("metrics endpoint: {error}", { error: (error as Error)?.message ?? error });
        return new Response("internal error\n", { status: 500 });
      },
    }, async (request) =>
      (await opts.handler?.(request)) ??
        handle(request, metrics, readiness));
  } catch (e) {
    const why = e instanceof Deno.errors.AddrInUse
      ? "address already in use (another kvsz on this host?)"
      : (e as Error).message;
    logger.warn(
      "metrics endpoint not started on {listen}: {reason}; kvsz keeps streaming without it " +
        "(set metrics.listen to a free host:port, or to an empty string to turn it off)",
      { listen, reason: why },
    );
    return null;
  }
  const { hostname, port } = server.addr;
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  const url = `http://${host}:${port}`;
  logger.info("serving metrics on {url}/metrics, health on /healthz and /readyz", { url });
  let stopped: Promise<void> | null = null;
  return {
    hostname,
    port,
    url,
    shutdown() {
      stopped ??= server.shutdown();
      return stopped;
    },
  };
}

async function handle(
  request: Request,
  metrics: Metrics,
  readiness: () => Readiness,
): Promise<Response> {
  const path = new URL(request.url).pathname;
  if (path !== "/metrics" && path !== "/healthz" && path !== "/readyz") {
    return json(404, { error: "not found", paths: ["/metrics", "/healthz", "/readyz"] });
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
  }
  switch (path) {
    case "/metrics":
      return new Response(await metrics.render(), {
        headers: { "content-type": metrics.contentType },
      });
    case "/healthz":
      return json(200, { status: "ok" });
    default: {
      const r = readiness();
      return json(r.ready ? 200 : 503, { status: r.ready ? "ready" : "not ready", ...r });
    }
  }
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}
