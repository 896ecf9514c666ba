/** Connection URLs read as libpq reads them, and passwords kept out of every message. */

import assert from "node:assert/strict";
import { ConnInfoError, parseConnInfo } from "../../lib/pg/conninfo.ts";
import { passwordsOf, redactText, redactUrl } from "../../lib/pg/redact.ts";

/** The ConnInfoError message `url` gives (fails when it parses). */
function errorOf(url: string, env = {}): string {
  try {
    parseConnInfo(url, env);
  } catch (e) {
    assert.ok(e instanceof ConnInfoError, String(e));
    return e.message;
  }
  assert.fail(`${url} parsed`);
}

Deno.test("libpq URL: user, password, hosts, database and libpq's defaults", () => {
  const info = parseConnInfo("postgres://kvsz:p%40ss%2Fw@db1:5433/app", {});
  assert.equal(info.user, "kvsz");
  assert.equal(info.password, "p@ss/w");
  assert.deepEqual(info.hosts, [{ host: "db1", port: 5433 }]);
  assert.equal(info.dbname, "app");
  assert.equal(info.sslmode, "prefer");
  assert.equal(info.targetSessionAttrs, "any");
  assert.equal(info.keepalives, true);
  assert.deepEqual(info.settings, {});
});

Deno.test("libpq URL: several hosts, IPv6, a port per host or one for all", () => {
  const info = parseConnInfo(
    "postgresql://u@a:5432,[::1]:5433,b/db?target_session_attrs=read-write",
    {},
  );
  assert.deepEqual(info.hosts, [
    { host: "a", port: 5432 },
    { host: "::1", port: 5433 },
    { host: "b", port: 5432 },
  ]);
  assert.equal(info.targetSessionAttrs, "read-write");
  const byParams = parseConnInfo("postgres:///db?host=/var/run/postgresql&port=5440", {});
  assert.deepEqual(byParams.hosts, [{ host: "/var/run/postgresql", port: 5440 }]);
});

Deno.test("libpq URL: TLS, timeout, keepalive and session parameters", () => {
  const info = parseConnInfo(
    "postgres://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem&sslcert=/c.pem&sslkey=/k.pem" +
      "&connect_timeout=1&keepalives=1&keepalives_idle=30&keepalives_interval=5&keepalives_count=3" +
      "&application_name=etl&options=-c%20search_path%3Dapp&search_path=x",
    {},
  );
  assert.equal(info.sslmode, "verify-full");
  assert.equal(info.sslrootcert, "/ca.pem");
  assert.equal(info.sslcert, "/c.pem");
  assert.equal(info.sslkey, "/k.pem");
  assert.equal(info.connectTimeout, 2, "libpq takes 1 s as 2 s");
  assert.equal(info.keepalivesIdle, 30);
  assert.equal(info.applicationName, "etl");
  assert.equal(info.options, "-c search_path=app");
  // Not a libpq parameter: a server setting, as kuvasz-streamer's driver sends it.
  assert.deepEqual(info.settings, { search_path: "x" });
});

Deno.test("libpq URL: environment variables fill what the URL leaves out", () => {
  const env = {
    PGSSLMODE: "require",
    PGSSLROOTCERT: "/etc/ca.pem",
    PGCONNECT_TIMEOUT: "7",
    PGAPPNAME: "from-env",
    PGTARGETSESSIONATTRS: "primary",
  };
  const info = parseConnInfo("postgres://u@h/db", env);
  assert.equal(info.sslmode, "require");
  assert.equal(info.sslrootcert, "/etc/ca.pem");
  assert.equal(info.connectTimeout, 7);
  assert.equal(info.applicationName, "from-env");
  assert.equal(info.targetSessionAttrs, "primary");
  assert.equal(parseConnInfo("postgres://u@h/db?sslmode=disable", env).sslmode, "disable");
  const system = parseConnInfo("postgres://u@h/db?sslrootcert=system", {});
  assert.equal(system.sslmode, "verify-full", "libpq: sslrootcert=system implies verify-full");
});

Deno.test("libpq URL: what kvsz cannot honour is an error naming the parameter", () => {
  assert.match(errorOf("postgres://u@h/db?sslmode=verify"), /sslmode must be one of .*verify-full/);
  assert.match(errorOf("postgres://u@h/db?passfile=/x"), /passfile is not supported/);
  assert.match(errorOf("postgres://u@h:99999/db"), /invalid port/);
  assert.match(errorOf("postgres://u@h/db?target_session_attrs=rw"), /target_session_attrs/);
  assert.match(
    errorOf("postgres://u@h/db?sslrootcert=system&sslmode=require"),
    /needs sslmode=verify-full/,
  );
});

Deno.test("a password that is not percent-encoded: the error says so and shows none of it", () => {
  const password = "Qw:er/ty%Uu7";
  for (
    const url of [
      `postgres://kvsz:${password}@127.0.0.1:5640/app`,
      "postgres://kvsz:Zq?Xv@127.0.0.1:5640/app",
      "postgres://kvsz:Zq%zzXv@127.0.0.1:5640/app",
    ]
  ) {
    const message = errorOf(url);
    assert.match(message, /percent/, message);
    for (const piece of ["Qw", "er/ty", "Uu7", "Zq", "Xv"]) {
      assert.ok(!message.includes(piece), `${piece} in ${message}`);
    }
  }
  // A '@' inside a parameter's value is not a password's end.
  const info = parseConnInfo("postgres://h/db?application_name=etl@host", {});
  assert.equal(info.applicationName, "etl@host");
});

Deno.test("redaction does not depend on the URL parsing", () => {
  const cases: [string, string][] = [
    ["postgres://kvsz:secret@h:5432/db", "postgres://kvsz:***@h:5432/db"],
    [
      "postgres://kvsz:Qw:er/ty%Uu7@127.0.0.1:5640/app",
      "postgres://kvsz:***@127.0.0.1:5640/app",
    ],
    ["postgres://kvsz:p@ss@h/db", "postgres://kvsz:***@h/db"],
    [
      "postgres://kvsz@h:5432/db?password=hunter22&x=1",
      "postgres://kvsz@h:5432/db?password=***&x=1",
    ],
    ["postgres://h:5432/db?application_name=a@b", "postgres://h:5432/db?application_name=a@b"],
    ["postgres://kvsz@h:5432/db", "postgres://kvsz@h:5432/db"],
  ];
  for (const [url, redacted] of cases) assert.equal(redactUrl(url), redacted);
  assert.deepEqual(passwordsOf("postgres://kvsz:p%40ss%2Fw@h/db"), ["p%40ss%2Fw", "p@ss/w"]);
  const text = "connect failed for user kvsz with p@ss/w at postgres://kvsz:p%40ss%2Fw@h/db";
  const out = redactText(text, ["postgres://kvsz:p%40ss%2Fw@h/db"]);
  assert.ok(!out.includes("p@ss/w") && !out.includes("p%40ss"), out);
});
