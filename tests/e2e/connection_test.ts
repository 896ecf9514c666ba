/**
 * Connections as libpq makes them, on real servers: TLS modes and the server's
 * identity checked against exactly the host in the URL, client certificates,
 * several hosts with target_session_attrs, URL parameters, and peers that are
 * not PostgreSQL (an HTTP server, one that closes at once, one that never
 * answers), which must fail fast with a clear message, never loop.
 */
import assert from "node:assert/strict";
import { stringify } from "yaml";
import { clusterSuite, startCluster, type TestCluster } from "../support/cluster.ts";
import { runCli, tempConfig } from "../support/run_cli.ts";
import { serveTls, TestCertificates } from "../support/tls.ts";
import { KvszProcess, tableRows, waitFor, waitForEqualRows } from "../support/kvsz.ts";
import { connect } from "../../lib/pg/connect.ts";

/** What one connection attempt gave: whether it is encrypted, or the error's message. */
async function attempt(url: string): Promise<{ ssl?: boolean; error?: string }> {
  const sql = connect(url, { connectTimeout: 5 });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const hung = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("no answer and no error within 20 s")), 20_000);
    });
    const [row] = await Promise.race([
      sql.unsafe("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"),
      hung,
    ]);
    return { ssl: row.ssl === true };
  } catch (e) {
    return { error: (e as Error).message };
  } finally {
    clearTimeout(timer);
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

/** The cluster's superuser URL on `host`, with `params`. */
function urlOn(c: TestCluster, host: string, params: Record<string, string>): string {
  const url = new URL(c.url());
  url.hostname = host;
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  return url.toString();
}

/** A TCP listener that answers each connection with `answer` (nothing: it never answers). */
function fakeServer(
  answer: "http" | "close" | "silent",
): { port: number; accepted: () => number } & AsyncDisposable {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  let accepted = 0;
  (async () => {
    for await (const conn of listener) {
      accepted++;
      open.add(conn);
      (async () => {
        try {
          if (answer === "close") return conn.close();
          await conn.read(new Uint8Array(1024));
          if (answer === "http") {
            await conn.write(
              new TextEncoder().encode("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
            );
            conn.close();
          }
        } catch { /* closed by the client */ }
      })().finally(() => open.delete(conn));
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    accepted: () => accepted,
    [Symbol.asyncDispose]: () => {
      listener.close();
      for (const c of open) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      return Promise.resolve();
    },
  };
}

/** A config streaming table `t` of `srcUrl` into `dstUrl`. */
function streamConfig(srcUrl: string, dstUrl: string, database = "app"): string {
  return stringify({
    destination: { url: dstUrl },
    databases: [{ database, urls: [{ url: srcUrl, sid: 1 }], tables: { t: null } }],
    metrics: { listen: "" },
    log: { format: "text" },
  });
}

clusterSuite("connections", {
  "sslmode=require against a server without TLS says so": async (c) => {
    const r = await attempt(urlOn(c, "127.0.0.1", { sslmode: "require" }));
    assert.match(
      r.error ?? "",
      /server does not support SSL, but sslmode=require/,
      JSON.stringify(r),
    );
    assert.deepEqual(await attempt(urlOn(c, "127.0.0.1", {})), { ssl: false }, "prefer falls back");
  },

  "application_name, options and keepalive parameters mean what they mean in libpq": async (c) => {
    const url = urlOn(c, "127.0.0.1", {
      application_name: "etl-job",
      options: "-c work_mem=5MB",
      keepalives: "1",
      keepalives_idle: "30",
      keepalives_interval: "5",
      keepalives_count: "3",
      connect_timeout: "4",
    });
    const sql = connect(url);
    try {
      const [row] = await sql.unsafe(
        "SELECT current_setting('application_name') AS app, current_setting('work_mem') AS mem",
      );
      assert.deepEqual({ ...row }, { app: "etl-job", mem: "5MB" });
    } finally {
      await sql.end();
    }
  },

  "several hosts: the first that is up and fits target_session_attrs is used": async (c) => {
    await using readOnly = await startCluster();
    await using down = fakeServer("close");
    const hostsUrl = (ports: number[], attrs: string) =>
      `postgres://postgres:${c.server.password}@${ports.map((p) => `127.0.0.1:${p}`).join(",")}` +
      `/postgres?target_session_attrs=${attrs}`;
    // Same password on both clusters; then every session of the second is read-only.
    const admin = readOnly.sql();
    await admin.unsafe("ALTER SYSTEM SET default_transaction_read_only = on");
    await admin.unsafe("SELECT pg_reload_conf()");
    await admin.begin(
      "read write",
      (tx) => tx.unsafe(`ALTER ROLE postgres PASSWORD '${c.server.password}'`),
    );
    const portOf = async (url: string) => {
      const sql = connect(url);
      try {
        return Number((await sql.unsafe("SHOW port"))[0].port);
      } finally {
        await sql.end();
      }
    };
    const ro = readOnly.server.port;
    const rw = c.server.port;
    assert.equal(await portOf(hostsUrl([ro, rw], "read-write")), rw);
    assert.equal(await portOf(hostsUrl([rw, ro], "read-only")), ro);
    assert.equal(await portOf(hostsUrl([ro, rw], "any")), ro);
    assert.equal(await portOf(hostsUrl([down.port, rw], "read-write")), rw);
    const none = await attempt(hostsUrl([ro, ro], "read-write"));
    assert.match(
      none.error ?? "",
      /could not connect to any host: .*is read-only \(target_session_attrs=read-write\)/,
    );
  },

  "a peer that is not PostgreSQL fails at once with a clear error, in validate, status and run":
    async (c) => {
      await using http = fakeServer("http");
      const dstDb = await c.createDatabase("dst");
      await c.sql(dstDb).unsafe("CREATE TABLE t (id int PRIMARY KEY, v text)");
      const srcUrl = `postgres://kvsz:pw@127.0.0.1:${http.port}/app`;
      await using cfg = await tempConfig(streamConfig(srcUrl, c.url(dstDb)));

      const validate = await runCli(["validate", "--config", cfg.path], { timeoutMs: 30_000 });
      assert.equal(validate.code, 1, validate.output);
      assert.match(
        validate.output,
        new RegExp(`127\\.0\\.0\\.1:${http.port} is not a PostgreSQL server`),
      );
      const status = await runCli(["status", "--config", cfg.path], { timeoutMs: 30_000 });
      assert.match(status.output, /is not a PostgreSQL server/, status.output);
      // Without TLS negotiation, the startup's answer gives it away just as fast.
      const plain = await attempt(`postgres://kvsz:pw@127.0.0.1:${http.port}/app?sslmode=disable`);
      assert.match(plain.error ?? "", /is not a PostgreSQL server/, JSON.stringify(plain));
      const afterCli = http.accepted();
      assert.ok(afterCli <= 10, `validate, status and a connection opened ${afterCli} connections`);

      // run: the source is retried with backoff, the rest of kvsz keeps going, SIGTERM stops it.
      await using kvsz = KvszProcess.start(["run", "--config", cfg.path]);
      await kvsz.waitForOutput(/is not a PostgreSQL server.*retrying in 2 s/);
      const started = Date.now();
      assert.equal(await kvsz.stop("SIGTERM", 20_000), 0, kvsz.output);
      assert.ok(Date.now() - started < 10_000, `stopped after ${Date.now() - started} ms`);
      const byRun = http.accepted() - afterCli;
      assert.ok(byRun <= 20, `run opened ${byRun} connections:\n${kvsz.output}`);
    },

  "a URL whose first host is not PostgreSQL: kvsz goes on to the next host, as libpq does": async (
    c,
  ) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    await src.unsafe("CREATE TABLE t (id int PRIMARY KEY, v text)");
    await dst.unsafe("CREATE TABLE t (id int PRIMARY KEY, v text)");
    await using http = fakeServer("http");
    const srcUrl =
      `postgres://postgres:${c.server.password}@127.0.0.1:${http.port},127.0.0.1:${c.server.port}/${srcDb}`;
    await using cfg = await tempConfig(streamConfig(srcUrl, c.url(dstDb)));
    await using kvsz = KvszProcess.start(["run", "--config", cfg.path]);
    await kvsz.waitForOutput(/streaming from/);
    await src.unsafe("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g");
    await waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "t"), { kvsz });
    assert.equal(await kvsz.stop(), 0, kvsz.output);
  },

  "a peer that closes at once, and one that never answers, fail within connect_timeout": async (
    c,
  ) => {
    await using closing = fakeServer("close");
    await using silent = fakeServer("silent");
    const closed = await attempt(`postgres://u:p@127.0.0.1:${closing.port}/db?sslmode=disable`);
    assert.match(
      closed.error ?? "",
      /closed the connection without answering|not a PostgreSQL/,
      JSON.stringify(closed),
    );
    assert.ok(closing.accepted() <= 3, `${closing.accepted()} connections`);
    const started = Date.now();
    const hung = await attempt(`postgres://u:p@127.0.0.1:${silent.port}/db?connect_timeout=2`);
    assert.match(hung.error ?? "", /within 2 s|CONNECT_TIMEOUT/, JSON.stringify(hung));
    assert.ok(Date.now() - started < 10_000, `gave up after ${Date.now() - started} ms`);
    void c;
  },

  "sslmode=verify-full checks the certificate against exactly the host in the URL, a name or an IP address":
    async (c) => {
      await using certs = await TestCertificates.create();
      const forName = await certs.issue("name", "localhost", ["DNS:localhost"]);
      const forIp = await certs.issue("ip", "127.0.0.1", ["IP:127.0.0.1"]);
      const verify = { sslmode: "verify-full", sslrootcert: certs.ca };

      await serveTls(c, forName, { ca: certs.ca });
      assert.deepEqual(await attempt(urlOn(c, "localhost", verify)), { ssl: true });
      const byIp = await attempt(urlOn(c, "127.0.0.1", verify));
      assert.match(
        byIp.error ?? "",
        /127\.0\.0\.1.*(altnames|not in the cert)/,
        JSON.stringify(byIp),
      );

      await serveTls(c, forIp, { ca: certs.ca });
      assert.deepEqual(await attempt(urlOn(c, "127.0.0.1", verify)), { ssl: true });
      const byName = await attempt(urlOn(c, "localhost", verify));
      assert.match(
        byName.error ?? "",
        /localhost.*(altnames|not in the cert)/,
        JSON.stringify(byName),
      );
    },

  "verify-ca checks the chain but not the name; require encrypts; a CA at hand makes require check it":
    async (c) => {
      await using certs = await TestCertificates.create();
      await using other = await TestCertificates.create();
      await serveTls(c, await certs.issue("s", "elsewhere", ["DNS:elsewhere.example"]), {
        ca: certs.ca,
      });
      assert.deepEqual(
        await attempt(urlOn(c, "127.0.0.1", { sslmode: "verify-ca", sslrootcert: certs.ca })),
        { ssl: true },
      );
      const wrongCa = await attempt(
        urlOn(c, "127.0.0.1", { sslmode: "verify-ca", sslrootcert: other.ca }),
      );
      assert.match(
        wrongCa.error ?? "",
        /TLS failed \(sslmode=verify-ca\)/,
        JSON.stringify(wrongCa),
      );
      assert.deepEqual(await attempt(urlOn(c, "127.0.0.1", { sslmode: "require" })), { ssl: true });
      const requireWrongCa = await attempt(
        urlOn(c, "127.0.0.1", { sslmode: "require", sslrootcert: other.ca }),
      );
      assert.ok(requireWrongCa.error, "libpq: require with a root certificate verifies the chain");
      // prefer (libpq's default) encrypts when the server offers TLS.
      assert.deepEqual(await attempt(urlOn(c, "127.0.0.1", {})), { ssl: true });
      assert.deepEqual(await attempt(urlOn(c, "127.0.0.1", { sslmode: "disable" })), {
        ssl: false,
      });
      const noRoot = await attempt(urlOn(c, "127.0.0.1", { sslmode: "verify-full" }));
      assert.match(noRoot.error ?? "", /sslrootcert/, JSON.stringify(noRoot));
    },

  "a client certificate (sslcert, sslkey) logs in a role that pg_hba.conf authenticates by certificate":
    async (c) => {
      await using certs = await TestCertificates.create();
      await c.sql().unsafe("CREATE ROLE cert_user LOGIN");
      await serveTls(c, await certs.issue("s", "127.0.0.1", ["IP:127.0.0.1"]), {
        ca: certs.ca,
        hba: ["hostssl all cert_user 127.0.0.1/32 cert"],
      });
      const client = await certs.issue("client", "cert_user");
      const url = `postgres://cert_user@127.0.0.1:${c.server.port}/postgres`;
      const tls = `sslmode=verify-full&sslrootcert=${certs.ca}`;
      assert.deepEqual(
        await attempt(`${url}?${tls}&sslcert=${client.cert}&sslkey=${client.key}`),
        { ssl: true },
      );
      const without = await attempt(`${url}?${tls}`);
      assert.match(without.error ?? "", /certificate/, JSON.stringify(without));
    },
});

clusterSuite("connections: kvsz streams over TLS", {
  "copy, apply and replication connections all use verify-full TLS": async (c) => {
    await using certs = await TestCertificates.create();
    await serveTls(c, await certs.issue("s", "127.0.0.1", ["IP:127.0.0.1"]), { ca: certs.ca });
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    await src.unsafe("CREATE TABLE t (id int PRIMARY KEY, v text)");
    await src.unsafe("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 500) g");
    await dst.unsafe("CREATE TABLE t (id int PRIMARY KEY, v text)");
    const tls = `?sslmode=verify-full&application_name=kvsz-tls`;
    await using cfg = await tempConfig(streamConfig(c.url(srcDb) + tls, c.url(dstDb) + tls));
    // The CA comes from the environment, as libpq reads PGSSLROOTCERT.
    await using kvsz = KvszProcess.start(["run", "--config", cfg.path], {
      PGSSLROOTCERT: certs.ca,
    });
    await kvsz.waitForOutput(/streaming from/);
    await src.unsafe("INSERT INTO t SELECT g, 'v' || g FROM generate_series(501, 1000) g");
    await waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "t"), { kvsz });
    await waitFor(async () => {
      const rows = await c.sql().unsafe(`
        SELECT a.backend_type, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.application_name = 'kvsz-tls'`);
      return rows.length >= 2 && rows.every((r) => r.ssl === true) &&
        rows.some((r) => r.backend_type === "walsender");
    }, { what: "kvsz's sessions, the walsender among them, all on TLS" });
    assert.equal(await kvsz.stop(), 0, kvsz.output);
  },
});
