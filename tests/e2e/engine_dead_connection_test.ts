/**
 * Connections that die silently: a TCP proxy the test controls stops carrying
 * bytes while keeping the sockets open. kvsz must notice on the source's side
 * (receive timeout) and on the destination's (the watchdog looks at the
 * writing session), reconnect, and resume exactly once; a write that only
 * waits for a lock must be reported, not cut.
 */
import assert from "node:assert/strict";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitForEqualRows, writeConfig } from "../support/kvsz.ts";
import { TcpProxy } from "../support/tcp_proxy.ts";

/** `url` of the cluster with its port replaced by the proxy's. */
function through(url: string, proxy: TcpProxy, params = ""): string {
  return url.replace(/@127\.0\.0\.1:\d+\//, `@127.0.0.1:${proxy.port}/`) + params;
}

/**
 * A source and destination with a keyless table `events` (a change applied
 * twice shows as a duplicate row), and kvsz's config with `timeouts`.
 */
async function setup(c: TestCluster) {
  const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
  await src.unsafe("CREATE TABLE events (n int, v text); ALTER TABLE events REPLICA IDENTITY FULL");
  await dst.unsafe("CREATE TABLE events (n int, v text)");
  const insert = (from: number, to: number) =>
    src.unsafe(`INSERT INTO events SELECT g, 'v' || g FROM generate_series($1::int, $2::int) g`, [
      from,
      to,
    ]);
  const equal = (kvsz: KvszProcess) =>
    waitForEqualRows(() => tableRows(src, "events"), () => tableRows(dst, "events"), {
      kvsz,
      timeoutMs: 90_000,
    });
  const config = (
    opts: { srcUrl?: string; dstUrl?: string; timeouts: Record<string, number> },
  ) =>
    writeConfig({
      destination: { url: opts.dstUrl ?? c.url(dstDb) },
      databases: [{
        database: srcDb,
        urls: [{ url: opts.srcUrl ?? c.url(srcDb), sid: 1 }],
        tables: { events: null },
      }],
      apply: { commit_interval_ms: 20 },
      timeouts: opts.timeouts,
      metrics: { listen: "" },
      log: { format: "text" },
    });
  return { srcDb, dstDb, src, dst, insert, equal, config };
}

clusterSuite("kvsz run: connections that die silently", {
  "a source path that goes silent: noticed within replication_receive_seconds, resumed exactly once":
    async (c) => {
      const s = await setup(c);
      await using proxy = new TcpProxy(c.server.port);
      const cfg = await s.config({
        srcUrl: through(c.url(s.srcDb), proxy),
        timeouts: { replication_receive_seconds: 4 },
      });
      await using kvsz = KvszProcess.start(["run", "--config", cfg]);
      await kvsz.waitForOutput(/streaming from/);
      await s.insert(1, 100);
      await s.equal(kvsz);
      const before = kvsz.output.length;
      proxy.freeze();
      await s.insert(101, 200);
      await kvsz.waitForOutput(/no message from the source for 4 s/, 30_000, before);
      // The server still holds the slot for the dead connection's walsender: kvsz ends it.
      await kvsz.waitForOutput(/ended this kvsz's earlier walsender/, 30_000, before);
      await s.equal(kvsz);
      assert.equal(await kvsz.stop(), 0, kvsz.output);
    },

  "a destination path that goes silent: the writing session is found idle, ended, and kvsz resumes exactly once":
    async (c) => {
      const s = await setup(c);
      await using proxy = new TcpProxy(c.server.port);
      const cfg = await s.config({
        dstUrl: through(c.url(s.dstDb), proxy),
        timeouts: { destination_check_seconds: 3 },
      });
      await using kvsz = KvszProcess.start(["run", "--config", cfg]);
      await kvsz.waitForOutput(/streaming from/);
      await s.insert(1, 100);
      await s.equal(kvsz);
      const before = kvsz.output.length;
      proxy.freeze();
      await s.insert(101, 200);
      await kvsz.waitForOutput(
        /unanswered for \d+ s, while its session .* is idle.*ended that session/,
        30_000,
        before,
      );
      await s.equal(kvsz);
      assert.equal(await kvsz.stop(), 0, kvsz.output);
    },

  "the whole destination unreachable: kvsz gives the write up and retries until it is back": async (
    c,
  ) => {
    const s = await setup(c);
    await using proxy = new TcpProxy(c.server.port);
    const cfg = await s.config({
      dstUrl: through(c.url(s.dstDb), proxy, "?connect_timeout=2"),
      timeouts: { destination_check_seconds: 2 },
    });
    await using kvsz = KvszProcess.start(["run", "--config", cfg]);
    await kvsz.waitForOutput(/streaming from/);
    await s.insert(1, 100);
    await s.equal(kvsz);
    const before = kvsz.output.length;
    proxy.blackholeNew = true;
    proxy.freeze();
    await s.insert(101, 200);
    await kvsz.waitForOutput(/the destination cannot be reached to look at it/, 30_000, before);
    await kvsz.waitForOutput(/retrying in/, 30_000, before);
    proxy.blackholeNew = false;
    await s.equal(kvsz);
    assert.equal(await kvsz.stop(), 0, kvsz.output);
  },

  "a write waiting for a lock is reported with the session holding it, and goes on when it is released":
    async (c) => {
      const s = await setup(c);
      const cfg = await s.config({ timeouts: { destination_check_seconds: 2 } });
      await using kvsz = KvszProcess.start(["run", "--config", cfg]);
      await kvsz.waitForOutput(/streaming from/);
      const locker = c.sql(s.dstDb);
      const before = kvsz.output.length;
      await locker.begin(async (tx) => {
        await tx.unsafe("SET application_name = 'the-locker'");
        await tx.unsafe("LOCK TABLE events IN ACCESS EXCLUSIVE MODE");
        await s.insert(1, 100);
        await kvsz.waitForOutput(/waits for a lock .* held by \d+ \(the-locker/, 30_000, before);
      });
      await s.equal(kvsz);
      assert.doesNotMatch(kvsz.output.slice(before), /ended that session|retrying in/);
      assert.equal(await kvsz.stop(), 0, kvsz.output);
    },
});
