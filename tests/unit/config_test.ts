/** The config loader: shape, defaults, interpolation, map files and every kind of error. */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { ConfigError, type Problem } from "../../lib/config/errors.ts";
import {
  configCandidates,
  findAndLoadConfig,
  findConfigPath,
  loadConfig,
  parseConfig,
} from "../../lib/config/load.ts";
import type { Env } from "../../lib/config/interpolate.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/config/", import.meta.url));
const EXAMPLE = fileURLToPath(new URL("../../config.example.yaml", import.meta.url));

const DESTINATION = `destination:
  url: postgres://kvsz:secret@127.0.0.1:5432/warehouse
`;

/** A valid config with one database; `tables` and `extra` are spliced in. */
function config(tables = "      t1:\n", extra = ""): string {
  return `${DESTINATION}databases:
  - database: db1
    urls:
      - url: postgres://kvsz:secret@10.0.0.1:5432/db1
        sid: 12
    tables:
${tables}${extra}`;
}

/** The problems `parseConfig` throws for `text` (fails when it does not throw). */
function problemsOf(text: string, env: Env = {}): Problem[] {
  try {
    parseConfig(text, "kvsz.yaml", env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${error}`);
    return error.details;
  }
  assert.fail("expected a ConfigError");
}

/** The ConfigError `promise` rejects with (fails when it resolves or rejects otherwise). */
async function configErrorOf(promise: Promise<unknown>): Promise<ConfigError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${error}`);
    return error;
  }
  assert.fail("expected a ConfigError");
}

/** Asserts `text` has exactly one problem, at `path`, whose message contains `message`. */
function assertOneProblem(text: string, path: string, message: string, env: Env = {}): Problem {
  const problems = problemsOf(text, env);
  assert.deepEqual(problems.map((p) => p.path), [path], JSON.stringify(problems));
  assert.ok(
    problems[0].message.includes(message),
    `"${problems[0].message}" should contain "${message}"`,
  );
  return problems[0];
}

Deno.test("the example from the design loads with every table option", () => {
  const text = `destination:
  url: postgres://kvsz:\${KVSZ_DEST_PASSWORD}@127.0.0.1:5432/warehouse
  schema: public
databases:
  - database: db1
    urls:
      - url: postgres://kvsz:secret@10.0.0.1:5432/db1
        sid: 12
    tables:
      t1:
      t2: { target: rt2 }
      t3: { type: append }
      t4: { type: history }
      t7: { partitions_regex: "t7_.*" }
      private.t8: { target: pt8 }
`;
  const cfg = parseConfig(text, "kvsz.yaml", { KVSZ_DEST_PASSWORD: "pw" });
  assert.equal(cfg.file, "kvsz.yaml");
  assert.equal(cfg.destination.url, "postgres://kvsz:pw@127.0.0.1:5432/warehouse");
  assert.deepEqual(cfg.databases[0].urls, [
    { url: "postgres://kvsz:secret@10.0.0.1:5432/db1", sid: "12", failover: false },
  ]);
  const base = { sourceSchema: "public", mode: "clone", onColumnDrift: "stop" };
  assert.deepEqual(cfg.databases[0].tables, [
    { ...base, source: "t1", sourceName: "t1", target: "t1" },
    { ...base, source: "t2", sourceName: "t2", target: "rt2" },
    { ...base, source: "t3", sourceName: "t3", target: "t3", mode: "append" },
    { ...base, source: "t4", sourceName: "t4", target: "t4", mode: "history" },
    { ...base, source: "t7", sourceName: "t7", target: "t7", partitionsRegex: "t7_.*" },
    { ...base, source: "private.t8", sourceSchema: "private", sourceName: "t8", target: "pt8" },
  ]);
});

Deno.test("defaults are applied to everything left out", () => {
  const cfg = parseConfig(config(), "kvsz.yaml", {});
  assert.equal(cfg.destination.schema, "public");
  assert.deepEqual(cfg.apply, {
    batchSize: 10000,
    commitIntervalMs: 200,
    queueSize: 20000,
    streamInProgress: true,
    streamWaitMs: 5000,
    spoolDir: undefined,
    onColumnDrift: "stop",
    workers: 4,
  });
  assert.deepEqual(cfg.sync, { parallelism: 2, rate: 0, burst: 0, splitMb: 64 });
  assert.deepEqual(cfg.metrics, {
    listen: "127.0.0.1:9187",
    readyMaxLagSeconds: 60,
    perSourceTables: 50,
  });
  assert.deepEqual(cfg.log, { level: "info", format: "auto" });
  assert.equal(cfg.retainedWalWarnBytes, 1024 * 1024 * 1024);
});

Deno.test("every setting is read", () => {
  const cfg = parseConfig(
    config(
      "      t1:\n",
      `apply: { batch_size: 5, commit_interval_ms: 0, queue_size: 50, stream_in_progress: false, stream_wait_ms: 100, spool_dir: /var/tmp, on_column_drift: continue, workers: 8 }
sync: { parallelism: 4, rate: 1000 }
metrics: { listen: "", ready_max_lag_seconds: 5, per_source_tables: 0 }
log: { level: warning, format: json }
status: { retained_wal_warn_mb: 2 }
`,
    ),
    "kvsz.yaml",
    {},
  );
  assert.deepEqual(cfg.apply, {
    batchSize: 5,
    commitIntervalMs: 0,
    queueSize: 50,
    streamInProgress: false,
    streamWaitMs: 100,
    spoolDir: "/var/tmp",
    onColumnDrift: "continue",
    workers: 8,
  });
  assert.equal(cfg.databases[0].tables[0].onColumnDrift, "continue", "the tables' default");
  assert.deepEqual(
    cfg.sync,
    { parallelism: 4, rate: 1000, burst: 1000, splitMb: 64 },
    "burst defaults to rate",
  );
  assert.deepEqual(cfg.metrics, { listen: "", readyMaxLagSeconds: 5, perSourceTables: 0 });
  assert.deepEqual(cfg.log, { level: "warning", format: "json" });
  assert.equal(cfg.retainedWalWarnBytes, 2 * 1024 * 1024);
});

Deno.test("sid: numbers become text, strings stay as written", () => {
  const text = `${DESTINATION}databases:
  - database: db1
    urls:
      - { url: "postgres://a@h1/db1", sid: 12 }
      - { url: "postgres://a@h2/db1", sid: eu-west }
      - { url: "postgres://a@h3/db1", sid: "7" }
      - { url: "postgresql://a@h4/db1", sid: 012 }
    tables: { t1: }
`;
  const cfg = parseConfig(text, "kvsz.yaml", {});
  assert.deepEqual(cfg.databases[0].urls.map((u) => u.sid), ["12", "eu-west", "7", "012"]);
});

Deno.test("schema-qualified table keys", () => {
  const cfg = parseConfig(
    config("      private.t8: { target: pt8 }\n      public.t9:\n      other.t9:\n"),
    "kvsz.yaml",
    {},
  );
  const tables = cfg.databases[0].tables.map((t) => [t.sourceSchema, t.sourceName, t.target]);
  assert.deepEqual(tables, [["private", "t8", "pt8"], ["public", "t9", "t9"], [
    "other",
    "t9",
    "t9",
  ]]);
});

Deno.test("several sources with different sids may feed one target", () => {
  const text = `${DESTINATION}databases:
  - database: db1
    urls: [{ url: "postgres://a@h1/db1", sid: 1 }]
    tables: { t1: }
  - database: db1
    urls: [{ url: "postgres://a@h2/db1", sid: 2 }]
    tables: { t1: }
  - database: db2
    urls: [{ url: "postgres://a@h3/db2", sid: 1 }]
    tables: { t2: { target: t1x } }
`;
  const cfg = parseConfig(text, "kvsz.yaml", {});
  assert.equal(cfg.databases.length, 3);
});

// ---- errors, one kind at a time ----

Deno.test("error: unknown key with a did-you-mean", () => {
  assertOneProblem(
    config("      t2: { tagret: rt2 }\n"),
    "databases[0].tables.t2.tagret",
    'unknown key (did you mean "target"?)',
  );
  assertOneProblem(
    config("      t1:\n", "metrix: {}\n"),
    "metrix",
    'unknown key (did you mean "metrics"?)',
  );
});

Deno.test("error: unknown key far from any known key lists the known keys", () => {
  assertOneProblem(
    config("      t1:\n", "apply: { colour: blue }\n"),
    "apply.colour",
    "unknown key (expected one of batch_size, commit_interval_ms, queue_size, stream_in_progress, stream_wait_ms, spool_dir, on_column_drift, workers)",
  );
});

Deno.test("on_column_drift: per table, over apply.on_column_drift; a typo names the choices", () => {
  const cfg = parseConfig(
    config(
      "      t1: { on_column_drift: continue }\n      t2:\n      t3: { type: history }\n",
      "apply: { on_column_drift: stop }\n",
    ),
    "kvsz.yaml",
    {},
  );
  assert.deepEqual(cfg.databases[0].tables.map((t) => [t.source, t.onColumnDrift]), [
    ["t1", "continue"],
    ["t2", "stop"],
    ["t3", "stop"],
  ]);
  assertOneProblem(
    config("      t1: { on_column_drift: contineu }\n"),
    "databases[0].tables.t1.on_column_drift",
    'must be one of stop, continue, not "contineu" (did you mean "continue"?)',
  );
});

Deno.test("error: table type must be one of the modes", () => {
  const problem = assertOneProblem(
    config("      t3: { type: apend }\n"),
    "databases[0].tables.t3.type",
    'must be one of clone, append, history, not "apend" (did you mean "append"?)',
  );
  assert.equal(problem.line, 9);
});

Deno.test("error: log level and format are exact", () => {
  assertOneProblem(
    config("      t1:\n", "log: { level: warn }\n"),
    "log.level",
    'must be one of debug, info, warning, error, not "warn" (did you mean "warning"?)',
  );
  assertOneProblem(
    config("      t1:\n", "log: { format: JSON }\n"),
    "log.format",
    "must be one of auto, text, json",
  );
});

Deno.test("error: urls must be postgres URLs, and passwords are never shown", () => {
  const text = config().replace("postgres://kvsz:secret@10.0.0.1", "mysql://kvsz:secret@10.0.0.1");
  const problem = assertOneProblem(
    text,
    "databases[0].urls[0].url",
    'must be a postgres:// or postgresql:// URL, not "mysql://kvsz:***@10.0.0.1:5432/db1"',
  );
  assert.ok(!problem.message.includes("secret"));

  const broken = config().replace(
    "postgres://kvsz:secret@10.0.0.1:5432",
    "postgres://kvsz:secret@h:port",
  );
  const brokenProblem = assertOneProblem(
    broken,
    "databases[0].urls[0].url",
    '"postgres://kvsz:***@h:port/db1": invalid port "port"',
  );
  assert.ok(!brokenProblem.message.includes("secret"));

  // A password that is not percent-encoded: said so, and none of it shown.
  const unencoded = config().replace(
    "postgres://kvsz:secret@10.0.0.1:5432",
    "postgres://kvsz:Qw:er/ty%Uu7@10.0.0.1:5432",
  );
  const unencodedProblem = assertOneProblem(
    unencoded,
    "databases[0].urls[0].url",
    "the user name or password is not percent-encoded",
  );
  for (const piece of ["Qw", "er/ty", "Uu7"]) assert.ok(!unencodedProblem.message.includes(piece));

  assertOneProblem(
    config().replace("url: postgres://kvsz:secret@127.0.0.1:5432/warehouse", "url: 5432"),
    "destination.url",
    "must be a postgres:// or postgresql:// URL, not 5432",
  );
});

Deno.test("error: missing destination or destination url", () => {
  const noDestination = config().replace(DESTINATION, "");
  assertOneProblem(noDestination, "destination", "required");
  assertOneProblem(
    config().replace(DESTINATION, "destination:\n  schema: dw\n"),
    "destination.url",
    "required",
  );
});

Deno.test("destination.replica_role: false by default, a boolean", () => {
  assert.equal(parseConfig(config(), "kvsz.yaml", {}).destination.replicaRole, false);
  const on = config().replace(DESTINATION, `${DESTINATION}  replica_role: true\n`);
  assert.equal(parseConfig(on, "kvsz.yaml", {}).destination.replicaRole, true);
  assertOneProblem(
    config().replace(DESTINATION, `${DESTINATION}  replica_role: maybe\n`),
    "destination.replica_role",
    "true or false",
  );
});

Deno.test("failover: false by default, a boolean per source", () => {
  assert.equal(parseConfig(config(), "kvsz.yaml", {}).databases[0].urls[0].failover, false);
  const on = config().replace("sid: 12", "sid: 12\n        failover: true");
  assert.equal(parseConfig(on, "kvsz.yaml", {}).databases[0].urls[0].failover, true);
  assertOneProblem(
    config().replace("sid: 12", 'sid: 12\n        failover: "yes"'),
    "databases[0].urls[0].failover",
    "must be true or false",
  );
  assertOneProblem(
    config().replace("sid: 12", "sid: 12\n        failovr: true"),
    "databases[0].urls[0].failovr",
    'did you mean "failover"?',
  );
});

Deno.test("failover with several hosts needs target_session_attrs read-write or primary", () => {
  const hosts = "postgres://kvsz:secret@10.0.0.1:5432,10.0.0.2:5432/db1";
  const withUrl = (url: string, failover: boolean) =>
    config().replace("postgres://kvsz:secret@10.0.0.1:5432/db1", url)
      .replace("sid: 12", `sid: 12\n        failover: ${failover}`);
  for (const attrs of ["read-write", "primary"]) {
    const cfg = parseConfig(withUrl(`${hosts}?target_session_attrs=${attrs}`, true), "k.yaml", {});
    assert.equal(cfg.databases[0].urls[0].failover, true);
  }
  // One host (a name or address that follows the primary) is fine, and so is no failover.
  parseConfig(withUrl("postgres://kvsz:secret@db.example:5432/db1", true), "k.yaml", {});
  parseConfig(withUrl(hosts, false), "k.yaml", {});
  const problem = assertOneProblem(
    withUrl(hosts, true),
    "databases[0].urls[0].failover",
    "the URL lists 2 hosts with target_session_attrs=any: kvsz could connect to a standby; " +
      "add ?target_session_attrs=read-write",
  );
  assert.ok(!problem.message.includes("secret"), problem.message);
  assertOneProblem(
    withUrl(`${hosts}?target_session_attrs=prefer-standby`, true),
    "databases[0].urls[0].failover",
    "target_session_attrs=prefer-standby",
  );
});

Deno.test("error: sid must be a number or a non-empty string, and is required", () => {
  assertOneProblem(
    config().replace("sid: 12", "sid: true"),
    "databases[0].urls[0].sid",
    "must be a number or a non-empty string, not true",
  );
  assertOneProblem(
    config().replace("sid: 12", 'sid: ""'),
    "databases[0].urls[0].sid",
    "must be a number or a non-empty string",
  );
  assertOneProblem(
    config().replace("\n        sid: 12", ""),
    "databases[0].urls[0].sid",
    "required",
  );
});

Deno.test("error: duplicate sid within one database", () => {
  const text = `${DESTINATION}databases:
  - database: db1
    urls:
      - { url: "postgres://a@h1/db1", sid: 1 }
      - { url: "postgres://a@h2/db1", sid: "1" }
    tables: { t1: }
`;
  const problem = assertOneProblem(
    text,
    "databases[0].urls[1].sid",
    'duplicate sid "1" (also used by databases[0].urls[0])',
  );
  assert.equal(problem.line, 7);
});

Deno.test("error: two database entries feeding the same (target, sid)", () => {
  const text = `${DESTINATION}databases:
  - database: db1
    urls: [{ url: "postgres://a@h1/db1", sid: 1 }]
    tables: { t1: }
  - database: db2
    urls: [{ url: "postgres://a@h2/db2", sid: 1 }]
    tables: { t2: { target: t1 } }
`;
  assertOneProblem(
    text,
    "databases[1].tables.t2",
    'target "t1" with sid "1" is already fed by databases[0].tables.t1',
  );
});

Deno.test("error: sources whose slot names collide, in one entry or across entries", () => {
  const text = `${DESTINATION}databases:
  - database: app
    urls:
      - { url: "postgres://a@h1/app", sid: eu-1 }
      - { url: "postgres://a@h2/app", sid: EU.1 }
    tables: { t1: }
  - database: a_b
    urls: [{ url: "postgres://a@h3/a_b", sid: c }]
    tables: { t2: }
  - database: a
    urls: [{ url: "postgres://a@h4/a", sid: b_c }]
    tables: { t3: }
  - database: ${"d".repeat(60)}
    urls: [{ url: "postgres://a@h5/d", sid: 1 }, { url: "postgres://a@h5/d", sid: 2 }]
    tables: { t4: }
`;
  const problems = problemsOf(text);
  assert.deepEqual(
    problems.map((p) => `${p.line}: ${p.path}`),
    ["7: databases[0].urls[1].sid", "13: databases[2].urls[0].sid", "16: databases[3].urls[1].sid"],
  );
  assert.equal(
    problems[0].message,
    'database "app" sid "EU.1" collides with databases[0].urls[0] (line 6), database "app" sid "eu-1": ' +
      "both would use the slot, publication and replication origin named kvsz_app_eu_1; " +
      "give one of them another sid",
  );
  assert.match(
    problems[1].message,
    /sid "b_c" collides with databases\[1\]\.urls\[0\] \(line 10\), database "a_b" sid "c": .* named kvsz_a_b_c;/,
  );
  // Cut at 63 characters, sids 1 and 2 of a long database name give one name.
  assert.match(
    problems[2].message,
    /sid "2" collides with databases\[3\]\.urls\[0\] \(line 16\), database "d{60}" sid "1"/,
  );
});

Deno.test("error: one database on two servers with one sid shares the progress row too", () => {
  const text = `${DESTINATION}databases:
  - database: app
    urls: [{ url: "postgres://a@h1/app", sid: 1 }]
    tables: { t1: }
  - database: app
    urls: [{ url: "postgres://a@h2/app", sid: 1 }]
    tables: { t2: }
`;
  assertOneProblem(
    text,
    "databases[1].urls[0].sid",
    "both would use the same kvsz.progress row and the slot, publication and replication origin named kvsz_app_1",
  );
});

Deno.test("sources whose names differ only where kvsz keeps them apart load, names unchanged", () => {
  const text = `${DESTINATION}databases:
  - database: app
    urls:
      - { url: "postgres://a@h1/app", sid: eu_1 }
      - { url: "postgres://a@h2/app", sid: eu_2 }
    tables: { t1: }
  - database: app2
    urls: [{ url: "postgres://a@h3/app2", sid: eu_1 }]
    tables: { t2: }
`;
  const config = parseConfig(text, "kvsz.yaml", {});
  assert.deepEqual(config.databases.map((d) => d.urls.map((u) => u.sid)), [["eu_1", "eu_2"], [
    "eu_1",
  ]]);
});

Deno.test("error: invalid partitions_regex carries the regex's message", () => {
  assertOneProblem(
    config('      t7: { partitions_regex: "t7_(" }\n'),
    "databases[0].tables.t7.partitions_regex",
    "Invalid regular expression: /t7_(/: Unterminated group",
  );
});

Deno.test("error: empty databases list", () => {
  assertOneProblem(`${DESTINATION}databases: []\n`, "databases", "must list at least one database");
  assertOneProblem(`${DESTINATION}databases:\n`, "databases", "must list at least one database");
  assertOneProblem(`${DESTINATION}databases: db1\n`, "databases", "must be a list of databases");
});

Deno.test("error: database without name, urls or tables", () => {
  assertOneProblem(
    config().replace("  - database: db1\n    urls:", "  - urls:"),
    "databases[0].database",
    "required",
  );
  const noUrls = `${DESTINATION}databases:
  - database: db1
    tables: { t1: }
`;
  assertOneProblem(noUrls, "databases[0].urls", "required");
  assertOneProblem(
    noUrls.replace("    tables", "    urls: []\n    tables"),
    "databases[0].urls",
    "must list at least one source URL",
  );
  const noTables = `${DESTINATION}databases:
  - database: db1
    urls: [{ url: "postgres://a@h1/db1", sid: 1 }]
`;
  assertOneProblem(noTables, "databases[0].tables", "required");
  assertOneProblem(`${noTables}    tables: {}\n`, "databases[0].tables", "must map at least one");
});

Deno.test("error: bad table keys and targets", () => {
  assertOneProblem(
    config("      a.b.c:\n"),
    "databases[0].tables.a.b.c",
    'table name must be "table" or "schema.table"',
  );
  assertOneProblem(
    config("      t1:\n      public.t1:\n"),
    "databases[0].tables.public.t1",
    "same source table as databases[0].tables.t1",
  );
  assertOneProblem(
    config("      t1: { target: other.t1 }\n"),
    "databases[0].tables.t1.target",
    "must be a table name without schema",
  );
  assertOneProblem(
    config("      t1: clone\n"),
    "databases[0].tables.t1",
    "must be empty or a mapping with target, type, partitions_regex",
  );
});

Deno.test("error: numbers must be positive integers", () => {
  assertOneProblem(
    config("      t1:\n", "apply: { batch_size: 0 }\n"),
    "apply.batch_size",
    "must be a positive integer, not 0",
  );
  assertOneProblem(
    config("      t1:\n", "sync: { parallelism: 1.5 }\n"),
    "sync.parallelism",
    "must be a positive integer, not 1.5",
  );
  assertOneProblem(
    config("      t1:\n", "sync: { rate: -1 }\n"),
    "sync.rate",
    "must be an integer of 0 or more, not -1",
  );
  assertOneProblem(
    config("      t1:\n", 'apply: { queue_size: "100" }\n'),
    "apply.queue_size",
    'must be a positive integer, not "100" (remove the quotes)',
  );
});

Deno.test("error: switches must be true or false", () => {
  assertOneProblem(
    config("      t1:\n", 'apply: { stream_in_progress: "true" }\n'),
    "apply.stream_in_progress",
    'must be true or false, not "true" (remove the quotes)',
  );
  assertOneProblem(
    config("      t1:\n", "apply: { stream_in_progress: 1 }\n"),
    "apply.stream_in_progress",
    "must be true or false, not 1",
  );
});

Deno.test("error: metrics.listen must be host:port or empty", () => {
  assertOneProblem(
    config("      t1:\n", "metrics: { listen: localhost }\n"),
    "metrics.listen",
    'must be "host:port"',
  );
  for (const listen of [":9187", "0.0.0.0:0", "[::1]:9187"]) {
    const cfg = parseConfig(config("      t1:\n", `metrics: { listen: "${listen}" }\n`), "k", {});
    assert.equal(cfg.metrics.listen, listen);
  }
});

Deno.test("error: databases and map_file are mutually exclusive, one is required", () => {
  assertOneProblem(
    config("      t1:\n", "map_file: ./map.yaml\n"),
    "map_file",
    "cannot be used together with databases",
  );
  assertOneProblem(DESTINATION, "databases", "required (or map_file");
});

Deno.test("error: the file must be a non-empty mapping", () => {
  assertOneProblem("", "", "the config file is empty");
  assertOneProblem("- a\n- b\n", "", "the top level must be a mapping, not a list");
});

Deno.test("error: YAML syntax errors name line and column", () => {
  const text = `destination:
  url: postgres://kvsz:secret@127.0.0.1:5432/warehouse
databases:
\t- database: db1
`;
  try {
    parseConfig(text, "kvsz.yaml", {});
    assert.fail("expected a ConfigError");
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    assert.equal(error.problems.length, 1);
    assert.match(error.message, /^kvsz\.yaml:4:1: YAML syntax error: Tabs are not allowed/);
  }
});

Deno.test("a config with three mistakes yields exactly three problems, formatted with lines", () => {
  const text = `destination:
  url: postgres://kvsz:secret@127.0.0.1:5432/warehouse
databases:
  - database: db1
    urls:
      - url: postgres://kvsz:secret@10.0.0.1:5432/db1
        sid: 12
    tables:
      t1: { tagret: x }
      t3: { type: appendd }
log:
  level: loud
`;
  try {
    parseConfig(text, "kvsz.yaml", {});
    assert.fail("expected a ConfigError");
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    assert.deepEqual(error.details.map((p) => p.path), [
      "databases[0].tables.t1.tagret",
      "databases[0].tables.t3.type",
      "log.level",
    ]);
    assert.deepEqual(error.problems, [
      'kvsz.yaml:9: databases[0].tables.t1.tagret: unknown key (did you mean "target"?)',
      'kvsz.yaml:10: databases[0].tables.t3.type: must be one of clone, append, history, not "appendd" (did you mean "append"?)',
      'kvsz.yaml:12: log.level: must be one of debug, info, warning, error, not "loud"',
    ]);
    assert.equal(error.message, error.problems.join("\n"));
    assert.ok(!error.message.includes("secret"));
  }
});

// ---- interpolation ----

Deno.test("interpolation: ${VAR}, ${VAR:-default} and $$", () => {
  const text = `destination:
  url: postgres://kvsz:\${PW}@\${HOST:-127.0.0.1}:\${PORT:-5432}/warehouse
  schema: \${SCHEMA:-public}
databases:
  - database: db$$1
    urls:
      - url: postgres://kvsz:pa$$word@10.0.0.1:5432/db1
        sid: \${SID:-7}
    tables: { t1: }
apply:
  batch_size: \${BATCH:-500}
`;
  const cfg = parseConfig(text, "kvsz.yaml", { PW: "s3", SCHEMA: "", PORT: "6543" });
  assert.equal(cfg.destination.url, "postgres://kvsz:s3@127.0.0.1:6543/warehouse");
  assert.equal(cfg.destination.schema, "public", "an empty variable takes the default");
  assert.equal(cfg.databases[0].database, "db$1");
  assert.equal(cfg.databases[0].urls[0].url, "postgres://kvsz:pa$word@10.0.0.1:5432/db1");
  assert.equal(cfg.databases[0].urls[0].sid, "7");
  assert.equal(cfg.apply.batchSize, 500, "an unquoted expanded integer is a number");
});

Deno.test("interpolation: an unset variable names the variable and the path, once", () => {
  const text = config().replace("kvsz:secret@127.0.0.1", "kvsz:${KVSZ_DEST_PASSWORD}@127.0.0.1");
  const problem = assertOneProblem(
    text,
    "destination.url",
    "environment variable KVSZ_DEST_PASSWORD is not set",
  );
  assert.equal(problem.line, 2);
  assertOneProblem(
    config().replace("sid: 12", "sid: ${SID}"),
    "databases[0].urls[0].sid",
    "environment variable SID is not set",
  );
});

Deno.test("interpolation: malformed references are reported", () => {
  assertOneProblem(
    config().replace("database: db1", "database: db${1}"),
    "databases[0].database",
    "is not a valid reference",
  );
  assertOneProblem(
    config().replace("database: db1", "database: db${X"),
    "databases[0].database",
    'without a closing "}"',
  );
});

// ---- map files ----

Deno.test("map_file: a kuvasz-streamer map file is read relative to the config", async () => {
  const cfg = await loadConfig(`${FIXTURES}with_map_file.yaml`, {});
  assert.equal(cfg.destination.url, "postgres://kvsz:pw@127.0.0.1:5432/warehouse");
  assert.deepEqual(cfg.databases.map((d) => d.database), ["db1", "db2"]);
  assert.deepEqual(cfg.databases[0].urls.map((u) => u.sid), ["12", "13"]);
  assert.deepEqual(
    cfg.databases[0].tables.map((t) => [t.source, t.target, t.mode, t.partitionsRegex]),
    [
      ["t1", "t1", "clone", undefined],
      ["t2", "rt2", "clone", undefined],
      ["t3", "t3", "append", undefined],
      ["t4", "t4", "history", undefined],
      ["t7", "t7", "clone", "t7_.*"],
    ],
  );
});

Deno.test("map_file: problems in the map file name the map file and its lines", async () => {
  const error = await configErrorOf(loadConfig(`${FIXTURES}with_bad_map_file.yaml`, {}));
  const mapFile = `${FIXTURES}kuvasz_map_bad.yaml`;
  assert.deepEqual(error.problems, [
    `${mapFile}:8: [0].tables.t1.tagret: unknown key (did you mean "target"?)`,
    `${mapFile}:10: [0].tables.t2.type: must be one of clone, append, history, not "appendd" (did you mean "append"?)`,
  ]);
});

Deno.test("map_file: a missing map file is reported at map_file", async () => {
  const error = await configErrorOf(loadConfig(`${FIXTURES}with_missing_map_file.yaml`, {}));
  assert.deepEqual(error.details.map((p) => [p.path, p.line]), [["map_file", 4]]);
  assert.match(error.message, /file .*no_such_map\.yaml does not exist/);
});

// ---- files ----

Deno.test("config.example.yaml loads without any environment", async () => {
  const cfg = await loadConfig(EXAMPLE, {});
  assert.equal(cfg.destination.url, "postgres://kvsz:@127.0.0.1:5432/warehouse");
  assert.equal(cfg.databases[0].tables.length, 7);
  const orders = cfg.databases[0].tables.find((t) => t.source === "orders");
  assert.equal(orders?.transform?.onError, "skip");
  assert.deepEqual([...orders?.transform?.set?.keys() ?? []], ["status", "total"]);
});

Deno.test("a missing config file says so and names the paths tried", async () => {
  const error = await configErrorOf(
    loadConfig("nope/kvsz.yaml", {}, { tried: ["nope/kvsz.yaml", "/etc/kvsz/kvsz.yaml"] }),
  );
  assert.match(
    error.message,
    /^nope\/kvsz\.yaml: config file does not exist \(tried nope\/kvsz\.yaml, \/etc\/kvsz\/kvsz\.yaml/,
  );
  const found = await configErrorOf(findAndLoadConfig("nope/other.yaml", {}));
  assert.match(found.message, /nope\/other\.yaml: config file does not exist/);
});

Deno.test("findConfigPath: --config, else $KVSZ_CONFIG, else the default paths", () => {
  assert.deepEqual(configCandidates("x.yaml", { KVSZ_CONFIG: "y.yaml" }), ["x.yaml"]);
  assert.deepEqual(configCandidates(undefined, { KVSZ_CONFIG: "y.yaml" }), ["y.yaml"]);
  assert.deepEqual(configCandidates(undefined, {}), ["kvsz.yaml", "/etc/kvsz/kvsz.yaml"]);
  assert.equal(findConfigPath("missing.yaml", {}), "missing.yaml");
  assert.equal(findConfigPath(undefined, { KVSZ_CONFIG: EXAMPLE }), EXAMPLE);
});

Deno.test("all_tables: true or a block; tables may then be left out", () => {
  const text = (all: string) =>
    `${DESTINATION}databases:
  - database: shop
    urls:
      - url: postgres://kvsz:secret@10.0.0.1:5432/shop
        sid: 1
    all_tables: ${all}
`;
  const plain = parseConfig(text("true"), "kvsz.yaml", {});
  assert.deepEqual(plain.databases[0].allTables, { exclude: [], schemas: [], mode: "clone" });
  assert.deepEqual(plain.databases[0].tables, []);
  const block = parseConfig(
    text(`{ exclude: ["app.audit_*"], schemas: [app], type: append }`),
    "kvsz.yaml",
    {},
  );
  assert.deepEqual(block.databases[0].allTables, {
    exclude: ["app.audit_*"],
    schemas: ["app"],
    mode: "append",
  });
  assertOneProblem(
    text(`{ exclude: app.audit }`),
    "databases[0].all_tables.exclude",
    'must be a list of names, not "app.audit"',
  );
});
