/**
 * `discover` blocks: what loads, what is refused at load with the entry
 * named, how names become sids and URLs, and how discovered sources share
 * slot names with the others (refused newcomers, kept incumbents).
 */
import assert from "node:assert/strict";
import { ConfigError, type Problem } from "../../lib/config/errors.ts";
import { parseConfig } from "../../lib/config/load.ts";
import type { Config } from "../../lib/config/types.ts";
import { tenantMatcher } from "../../lib/config/discover.ts";
import { databaseOf, withDatabase } from "../../lib/pg/url_database.ts";
import { expandSources, sourceKey } from "../../lib/engine/discovery.ts";

const DESTINATION = `destination:
  url: postgres://kvsz:secret@127.0.0.1:5432/warehouse
`;

/** A config with one entry discovering with `discover` (YAML flow mapping) and mapping accounts. */
function discovering(discover: string, extra = ""): string {
  return `${DESTINATION}databases:
  - database: tenants
    discover: ${discover}
    tables: { accounts: }
${extra}`;
}

function problemsOf(text: string): Problem[] {
  try {
    parseConfig(text, "kvsz.yaml", {});
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${error}`);
    return error.details;
  }
  assert.fail("expected a ConfigError");
}

function assertOneProblem(text: string, path: string, message: string): void {
  const problems = problemsOf(text);
  assert.deepEqual(problems.map((p) => p.path), [path], JSON.stringify(problems));
  assert.ok(problems[0].message.includes(message), `"${problems[0].message}" lacks "${message}"`);
}

Deno.test("discover: loads without urls, with its defaults; beside urls too", () => {
  const config = parseConfig(
    discovering(`{ url: "postgres://kvsz:pw@10.0.0.5:5432", pattern: "tenant_.*" }`),
    "kvsz.yaml",
    {},
  );
  assert.deepEqual(config.databases[0].urls, []);
  assert.deepEqual(config.databases[0].discover, {
    url: "postgres://kvsz:pw@10.0.0.5:5432",
    pattern: "tenant_.*",
    sid: "$0",
    intervalSeconds: 30,
  });
  const both = parseConfig(
    `${DESTINATION}databases:
  - database: tenants
    urls: [{ url: "postgres://kvsz@10.0.0.6/legacy", sid: legacy }]
    discover:
      url: postgres://kvsz@10.0.0.5/postgres?sslmode=require
      pattern: 'tenant_(\\d+)'
      sid: "t$1"
      interval_seconds: 5
    tables: { accounts: }
`,
    "kvsz.yaml",
    {},
  );
  assert.equal(both.databases[0].urls.length, 1);
  assert.equal(both.databases[0].discover?.sid, "t$1");
  assert.equal(both.databases[0].discover?.intervalSeconds, 5);
});

Deno.test("discover: a bad regular expression is refused at load, naming the entry", () => {
  assertOneProblem(
    discovering(`{ url: "postgres://a@h", pattern: "tenant_(" }`),
    "databases[0].discover.pattern",
    "Invalid regular expression: /tenant_(/: Unterminated group",
  );
  // Wrapped in ^(?:…)$ it would compile: checked alone first.
  assertOneProblem(
    discovering(`{ url: "postgres://a@h", pattern: "a)|(b" }`),
    "databases[0].discover.pattern",
    "Invalid regular expression",
  );
});

Deno.test("discover: a sid template naming a group the pattern lacks is refused at load", () => {
  assertOneProblem(
    discovering(`{ url: "postgres://a@h", pattern: 'tenant_(\\d+)', sid: "$2" }`),
    "databases[0].discover.sid",
    '"$2" uses group 2, but the pattern "tenant_(\\\\d+)" has 1 numbered',
  );
  assertOneProblem(
    discovering(`{ url: "postgres://a@h", pattern: "tenant_.*", sid: "$\${1}" }`),
    "databases[0].discover.sid",
    "has none (only $0, the whole name)",
  );
  assertOneProblem(
    discovering(`{ url: "postgres://a@h", pattern: "(?<region>eu|us)_(\\\\d+)", sid: "$<zone>" }`),
    "databases[0].discover.sid",
    "uses the group named zone, but the pattern",
  );
  assertOneProblem(
    discovering(`{ url: "postgres://a@h", pattern: "t_.*", sid: "$x" }`),
    "databases[0].discover.sid",
    '"$" at position 1 starts no reference',
  );
});

Deno.test("discover: url and pattern are required, the url a postgres URL, keys known", () => {
  const problems = problemsOf(discovering(`{ interval_seconds: 0, patern: x }`));
  assert.deepEqual(problems.map((p) => p.path).sort(), [
    "databases[0].discover.interval_seconds",
    "databases[0].discover.patern",
    "databases[0].discover.pattern",
    "databases[0].discover.url",
  ]);
  assertOneProblem(
    discovering(`{ url: "mysql://a:secret@h/x", pattern: x }`),
    "databases[0].discover.url",
    "must be a postgres:// or postgresql:// URL",
  );
  assert.doesNotMatch(
    JSON.stringify(problemsOf(discovering(`{ url: "mysql://a:secret@h" }`))),
    /secret/,
  );
  // Without discover, urls stay required.
  assertOneProblem(
    `${DESTINATION}databases:\n  - database: d\n    tables: { t: }\n`,
    "databases[0].urls",
    "required: list at least one source URL with its sid (or discover them)",
  );
});

Deno.test("1,000 database entries and 1,000 urls in one entry load", () => {
  const entries = Array.from({ length: 1000 }, (_, i) =>
    `  - database: tenant_${i}
    urls: [{ url: "postgres://kvsz@10.0.${i >> 8}.${i & 255}/tenant_${i}", sid: ${i} }]
    tables: { accounts: }`).join("\n");
  const many = parseConfig(`${DESTINATION}databases:\n${entries}\n`, "kvsz.yaml", {});
  assert.equal(many.databases.length, 1000);
  assert.equal(many.databases[999].urls[0].sid, "999");
  const urls = Array.from(
    { length: 1000 },
    (_, i) => `      - { url: "postgres://kvsz@db/tenant_${i}", sid: ${i} }`,
  ).join("\n");
  const one = parseConfig(
    `${DESTINATION}databases:\n  - database: tenants\n    urls:\n${urls}\n    tables: { accounts: }\n`,
    "kvsz.yaml",
    {},
  );
  assert.equal(one.databases[0].urls.length, 1000);
  // The collision checks still run over all of them.
  const clash = parseConfig.bind(
    null,
    `${DESTINATION}databases:\n  - database: tenants\n    urls:\n${urls}\n` +
      `      - { url: "postgres://kvsz@db/x", sid: "7" }\n    tables: { accounts: }\n`,
    "kvsz.yaml",
    {},
  );
  assert.throws(clash, /databases\[0\]\.urls\[1000\]\.sid: duplicate sid "7"/);
});

Deno.test("tenantMatcher: the whole name matches; $0, $&, $1, ${1}, $<name>, ${name}, $$", () => {
  const m = tenantMatcher("tenant_(\\d+)", "$1");
  assert.equal(m.sidOf("tenant_42"), "42");
  assert.equal(m.sidOf("tenant_42_old"), null, "the pattern must match the whole name");
  assert.equal(m.sidOf("old_tenant_42"), null);
  assert.equal(tenantMatcher("a|tenant_.*", "$0").sidOf("tenant_x"), "tenant_x");
  assert.equal(tenantMatcher("t_(\\d)", "${1}0").sidOf("t_7"), "70");
  // $10 is group 10, not group 1 then "0": ${1}0 says that.
  assert.throws(() => tenantMatcher("t_(\\d)", "$10"), /uses group 10/);
  const named = tenantMatcher("(?<region>eu|us)_(\\d+)", "$<region>-$2$$");
  assert.equal(named.sidOf("eu_12"), "eu-12$");
  assert.equal(tenantMatcher("(?<r>eu)_x", "${r}:$&").sidOf("eu_x"), "eu:eu_x");
  assert.equal(tenantMatcher("t(_x)?", "$1").sidOf("t"), "", "a group that took no part is empty");
});

Deno.test("withDatabase: another database, the rest of the URL kept; databaseOf", () => {
  assert.equal(
    withDatabase("postgres://u:p%40ss@h1:5432,h2/postgres?sslmode=require&dbname=x", "tenant 1"),
    "postgres://u:p%40ss@h1:5432,h2/tenant%201?sslmode=require",
  );
  assert.equal(withDatabase("postgresql://u@h", "t_1"), "postgresql://u@h/t_1");
  assert.equal(
    withDatabase("postgres://u@h?application_name=a", "t"),
    "postgres://u@h/t?application_name=a",
  );
  assert.equal(databaseOf("postgres://u@h:5432", "postgres"), "postgres");
  assert.equal(databaseOf("postgres://u@h/admin", "postgres"), "admin");
  assert.equal(databaseOf("postgres://u@h?dbname=admin", "postgres"), "admin");
});

/** A loaded config with `yaml` as its databases list. */
function loaded(yaml: string): Config {
  return parseConfig(`${DESTINATION}databases:\n${yaml}`, "kvsz.yaml", {});
}

/** A server listing `databases`, with the logical `slots` given (slot name: database). */
function listed(databases: string[], slots: Record<string, string> = {}) {
  return () => ({ databases, slots: new Map(Object.entries(slots)) });
}

/** The sources of an expansion as `database sid url-database`. */
function sourcesOf(config: Config): string[] {
  return config.databases.flatMap((db) =>
    db.urls.map((u) => `${db.database} ${u.sid} ${new URL(u.url).pathname.slice(1)}`)
  );
}

Deno.test("expandSources: matching databases follow the urls, with the sid and URL they make", () => {
  const config = loaded(`  - database: tenants
    urls: [{ url: "postgres://kvsz:pw@src/legacy", sid: legacy }]
    discover: { url: "postgres://kvsz:pw@src?sslmode=disable", pattern: 'tenant_(\\d+)', sid: "$1" }
    tables: { accounts: }
`);
  const { config: out, refused } = expandSources(config, {
    listing: listed(["postgres", "tenant_2", "tenant_10", "tenant_x", "legacy", "tenant_1"]),
    kept: new Set(),
  });
  assert.deepEqual(refused, []);
  assert.deepEqual(sourcesOf(out), [
    "tenants legacy legacy",
    "tenants 1 tenant_1",
    "tenants 10 tenant_10",
    "tenants 2 tenant_2",
  ]);
  const t1 = out.databases[0].urls[1];
  assert.equal(t1.url, "postgres://kvsz:pw@src/tenant_1?sslmode=disable");
  assert.deepEqual(t1.discovered, {
    name: "tenant_1",
    serverUrl: "postgres://kvsz:pw@src/postgres?sslmode=disable",
  });
  assert.equal(config.databases[0].urls.length, 1, "the loaded config is left as it was");
});

Deno.test("expandSources: a database the entry's urls already name on that server is theirs", () => {
  const config = loaded(`  - database: tenants
    urls: [{ url: "postgres://kvsz@src:5432/tenant_1", sid: one }]
    discover: { url: "postgres://kvsz@src", pattern: "tenant_.*" }
    tables: { accounts: }
`);
  const { config: out } = expandSources(config, {
    listing: listed(["tenant_1", "tenant_2"]),
    kept: new Set(),
  });
  assert.deepEqual(sourcesOf(out), ["tenants one tenant_1", "tenants tenant_2 tenant_2"]);
});

Deno.test("expandSources: a newcomer sharing a slot name is refused; urls and kept ones win", () => {
  const config = loaded(`  - database: tenants
    urls: [{ url: "postgres://kvsz@other/x", sid: 7 }]
    discover: { url: "postgres://kvsz@src", pattern: 't_0*(\\d+)', sid: "$1" }
    tables: { accounts: }
`);
  const listing = listed(["t_7", "t_01", "t_1"]);
  const first = expandSources(config, { listing, kept: new Set() });
  assert.deepEqual(sourcesOf(first.config), ["tenants 7 x", "tenants 1 t_01"]);
  assert.deepEqual(first.refused.map((r) => [r.name, r.sid]), [["t_1", "1"], ["t_7", "7"]]);
  assert.equal(
    first.refused[1].message,
    'database t_7 found by databases[0].discover is not streamed: database "tenants" sid "7" would use ' +
      "the slot, publication and replication origin named kvsz_tenants_7, which are " +
      "databases[0].urls[0]'s; make the sid template give it another sid, or narrow the pattern",
  );
  assert.match(
    first.refused[0].message,
    /which are database t_01 found by databases\[0\]\.discover \(sid "1"\)'s/,
  );
  // t_1 streamed before t_01 appeared (or was refused): it keeps its name.
  const kept = new Set([
    sourceKey("tenants", { sid: "1", discovered: { name: "t_1", serverUrl: "" } } as never),
  ]);
  const later = expandSources(config, { listing, kept });
  assert.deepEqual(sourcesOf(later.config), ["tenants 7 x", "tenants 1 t_1"]);
  assert.deepEqual(later.refused.map((r) => r.name), ["t_01", "t_7"]);
  // So does the database that holds the slot, for a process that remembers nothing (a
  // restart, status, drop).
  const restarted = expandSources(config, {
    listing: listed(["t_7", "t_01", "t_1"], { kvsz_tenants_1: "t_1" }),
    kept: new Set(),
  });
  assert.deepEqual(sourcesOf(restarted.config), ["tenants 7 x", "tenants 1 t_1"]);
});

Deno.test("expandSources: an empty sid or a (target, sid) another entry feeds is refused", () => {
  const config = loaded(`  - database: eu
    urls: [{ url: "postgres://kvsz@eu/app", sid: "2" }]
    tables: { accounts: }
  - database: tenants
    discover: { url: "postgres://kvsz@src", pattern: 't(\\d*)', sid: "$1" }
    tables: { accounts: }
`);
  const { config: out, refused } = expandSources(config, {
    listing: listed(["t", "t2", "t3"]),
    kept: new Set(),
  });
  assert.deepEqual(sourcesOf(out), ["eu 2 app", "tenants 3 t3"]);
  assert.deepEqual(refused.map((r) => r.message), [
    'database t found by databases[1].discover is not streamed: the sid template "$1" gives it an empty sid; ' +
    "make the pattern's groups match in every name it accepts",
    'database t2 found by databases[1].discover is not streamed: target "accounts" with sid "2" is already fed by ' +
    "databases[0].urls[0]; give the sources different sids or targets",
  ]);
});
