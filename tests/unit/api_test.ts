/**
 * The API's pieces that need no server: the token rules (hashed or from the
 * environment, loopback or not, open reads) and the map's round trip between
 * a config file's `databases:` and the store's rows, which must keep every
 * table's name as written (it keys what was copied).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { parse } from "yaml";
import { ApiAuth, isLoopback } from "../../lib/api/auth.ts";
import { databasesOfRows, rowsOfDocument } from "../../lib/api/map_rows.ts";
import { parseConfig } from "../../lib/config/load.ts";
import type { ConfigError } from "../../lib/config/errors.ts";

const sha = (t: string) => createHash("sha256").update(t).digest("hex");
const config = { tokenSha256: sha("secret-a"), tokenEnv: "TOKEN_VAR", readAuth: true };
const env = (vars: Record<string, string>) => (n: string) => vars[n];

Deno.test("API token: hashed or from the environment, each named; anything else refused", () => {
  const auth = new ApiAuth(config, "127.0.0.1", env({ TOKEN_VAR: "secret-b" }));
  assert.deepEqual(auth.check("Bearer secret-a", true), { ok: true, identity: "api.token_sha256" });
  assert.deepEqual(auth.check("bearer secret-b", true), { ok: true, identity: "$TOKEN_VAR" });
  assert.equal(auth.check("Bearer secret-c", false).ok, false);
  assert.equal(auth.check("Basic c2VjcmV0LWE=", false).ok, false);
  const none = auth.check(null, false);
  assert.ok(!none.ok && none.status === 401 && /Authorization: Bearer/.test(none.message));
});

Deno.test("API token: no API on a non-loopback listener without one; open reads on loopback only", () => {
  const bare = { tokenSha256: "", tokenEnv: "TOKEN_VAR", readAuth: false };
  const open = new ApiAuth(bare, "0.0.0.0", env({}));
  assert.match(open.disabledReason ?? "", /0\.0\.0\.0 is not loopback-only.*api\.token_sha256/);
  assert.equal(open.openReads, false);
  const local = new ApiAuth(bare, "::1", env({}));
  assert.equal(local.disabledReason, null);
  assert.deepEqual(local.check(null, false), { ok: true, identity: "anonymous" });
  const write = local.check(null, true);
  assert.ok(!write.ok && write.status === 403);
  assert.equal(new ApiAuth({ ...bare, readAuth: true }, "127.0.0.1", env({})).openReads, false);
  assert.equal(new ApiAuth(config, "0.0.0.0", env({})).disabledReason, null);
});

Deno.test("isLoopback: 127/8, ::1 and localhost only", () => {
  for (const h of ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"]) {
    assert.ok(isLoopback(h), h);
  }
  for (const h of ["0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "example.com"]) {
    assert.ok(!isLoopback(h), h);
  }
});

Deno.test("map rows: a file's databases round-trip with names, URLs and options as written", () => {
  const file = parse(`
- database: app
  urls:
    - { url: "postgres://u:\${PW}@h/app", sid: "1", failover: true }
  tables:
    t1:
    private.t8: { type: history, target: t8_h, partitions_regex: "^t8_.*" }
- database: tenants
  discover: { url: "postgres://u@h/postgres", pattern: "t_(.*)" }
  tables:
    orders: { on_column_drift: continue }
`);
  const rows = rowsOfDocument(file);
  assert.deepEqual(rows.tbls.map((t) => [t.id, t.db_id, t.name, t.type, t.target]), [
    [1, 1, "t1", "clone", "t1"],
    [2, 1, "private.t8", "history", "t8_h"],
    [3, 2, "orders", "clone", "orders"],
  ]);
  assert.equal(rows.urls[0].url, "postgres://u:${PW}@h/app");
  assert.deepEqual(databasesOfRows(rows), [
    {
      database: "app",
      urls: [{ url: "postgres://u:${PW}@h/app", sid: "1", failover: true }],
      tables: {
        t1: { type: "clone" },
        "private.t8": { type: "history", target: "t8_h", partitions_regex: "^t8_.*" },
      },
    },
    {
      database: "tenants",
      discover: { url: "postgres://u@h/postgres", pattern: "t_(.*)" },
      tables: { orders: { type: "clone", on_column_drift: "continue" } },
    },
  ]);
});

const BASE = `destination: { url: "postgres://u@h/d" }
databases:
  - database: app
    urls: [{ url: "postgres://u@h/app", sid: 1 }]
    tables: { t1: }
`;

/** The problems of a config (none when it loads). */
function problems(extra: string): string[] {
  try {
    parseConfig(BASE + extra, "kvsz.yaml", {});
    return [];
  } catch (e) {
    return (e as ConfigError).problems;
  }
}

Deno.test("config: api and map_store default to no token, reads with it, the file's map", () => {
  const cfg = parseConfig(BASE, "kvsz.yaml", {});
  assert.deepEqual(cfg.api, { tokenSha256: "", tokenEnv: "KVSZ_API_TOKEN", readAuth: true });
  assert.equal(cfg.mapStore, "file");
  const set = parseConfig(
    BASE + `api: { token_sha256: "${sha("x").toUpperCase()}", read_auth: false }\n` +
      `map_store: destination\n`,
    "kvsz.yaml",
    {},
  );
  assert.equal(set.api.tokenSha256, sha("x"));
  assert.equal(set.mapStore, "destination");
});

Deno.test("config: a token given in place of its hash is refused without being shown", () => {
  const [p] = problems(`api: { token_sha256: "plain-secret-token" }\n`);
  assert.match(p, /api\.token_sha256: must be the token's SHA-256 as 64 hex digits/);
  assert.ok(!p.includes("plain-secret-token"));
  assert.match(problems(`map_store: databse\n`)[0], /map_store: must be one of file, destination/);
  assert.match(problems(`api: { token: x }\n`)[0], /api\.token: unknown key/);
});
