/**
 * Who may call the API: a bearer token, configured as its SHA-256
 * (`api.token_sha256`) or read from an environment variable (`api.token_env`),
 * compared in constant time. Writes always need it; reads too, unless the
 * listener is loopback-only and `api.read_auth` is false. A listener on
 * another address with no token configured gets no API at all.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { ApiConfig } from "../config/types.ts";
import { registerSecrets } from "../log.ts";

/** A configured token: its SHA-256 and the name the change log records for it. */
interface KnownToken {
  sha256: Uint8Array;
  /** `api.token_sha256` or `$NAME`: where it was configured (never the token). */
  identity: string;
}

/** The outcome of {@link ApiAuth.check}: a caller's identity, or why it is refused. */
export type AuthResult =
  | { ok: true; identity: string }
  | { ok: false; status: 401 | 403; code: string; message: string };

/** The token rules of one listener. */
export class ApiAuth {
  readonly #tokens: KnownToken[];
  /** Reads need no token (loopback-only listener, `api.read_auth: false`). */
  readonly openReads: boolean;
  /** Why the API is off (non-loopback listener without a token); null when it serves. */
  readonly disabledReason: string | null;

  constructor(
    config: ApiConfig,
    hostname: string,
    env: (name: string) => string | undefined = (n) => Deno.env.get(n),
  ) {
    this.#tokens = [];
    if (config.tokenSha256 !== "") {
      this.#tokens.push({ sha256: fromHex(config.tokenSha256), identity: "api.token_sha256" });
    }
    const fromEnv = config.tokenEnv === "" ? undefined : env(config.tokenEnv);
    if (fromEnv) registerSecrets([fromEnv]);
    if (fromEnv) this.#tokens.push({ sha256: sha256(fromEnv), identity: `$${config.tokenEnv}` });
    const loopback = isLoopback(hostname);
    this.openReads = loopback && !config.readAuth;
    this.disabledReason = !loopback && this.#tokens.length === 0
      ? `the listener ${hostname} is not loopback-only and no API token is configured: ` +
        `set api.token_sha256 (printf %s "$TOKEN" | sha256sum) or $${
          config.tokenEnv || "KVSZ_API_TOKEN"
        } (api.token_env), or listen on 127.0.0.1`
      : null;
  }

  /** True when at least one token is configured. */
  get hasToken(): boolean {
    return this.#tokens.length > 0;
  }

  /** Checks the `Authorization` header of a request; `write` for anything but a read. */
  check(authorization: string | null, write: boolean): AuthResult {
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? "")?.[1];
    if (bearer !== undefined) {
      const given = sha256(bearer);
      // Every configured token is compared, so the time does not tell which matched.
      let identity: string | null = null;
      for (const t of this.#tokens) {
        if (timingSafeEqual(given, t.sha256) && identity === null) identity = t.identity;
      }
      if (identity !== null) return { ok: true, identity };
      return { ok: false, status: 401, code: "not_allowed", message: "invalid bearer token" };
    }
    if (!write && this.openReads) return { ok: true, identity: "anonymous" };
    if (!this.hasToken) {
      return {
        ok: false,
        status: 403,
        code: "not_allowed",
        message: write
          ? "no API token is configured, so nothing may be changed: set api.token_sha256 or the api.token_env variable"
          : "no API token is configured: set api.token_sha256 or the api.token_env variable " +
            "(or api.read_auth: false on a loopback-only listener)",
      };
    }
    return {
      ok: false,
      status: 401,
      code: "not_allowed",
      message: "no authorization header: send Authorization: Bearer <token>",
    };
  }
}

/** True for an address only this host reaches (127.0.0.0/8, ::1, localhost). */
export function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h) ||
    /^::ffff:127\.\d+\.\d+\.\d+$/.test(h);
}

function sha256(text: string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(text, "utf8").digest());
}

function fromHex(hex: string): Uint8Array {
  return new Uint8Array(hex.match(/../g)!.map((b) => parseInt(b, 16)));
}
