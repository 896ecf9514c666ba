/**
 * `--shard I/N`: the split is a pure function of the slot name (64-bit
 * FNV-1a, the published test vectors; pinned shards, so no machine or
 * version computes another split), spread evenly, and a bad value is an
 * error naming it and the fix.
 */
import assert from "node:assert/strict";
import { configForShard, fnv1a64, keepShard, parseShard, shardOf } from "../../lib/engine/shard.ts";
import { lockKey } from "../../lib/engine/source_locks.ts";
import type { Config, DatabaseMapping, SourceUrl } from "../../lib/config/types.ts";
import { kvszObjectName } from "../../lib/pg/identifiers.ts";

Deno.test("fnv1a64: the published FNV-1a 64-bit test vectors", () => {
  assert.equal(fnv1a64(""), 0xcbf29ce484222325n);
  assert.equal(fnv1a64("a"), 0xaf63dc4c8601ec8cn);
  assert.equal(fnv1a64("foobar"), 0x85944171f73967e8n);
});

Deno.test("shardOf: pinned shards of slot names (the split never changes under a source)", () => {
  const pinned: [string, number, number][] = [
    ["kvsz_tenant_1", 1, 2],
    ["kvsz_tenant_2", 0, 3],
    ["kvsz_tenant_3", 2, 0],
    ["kvsz_app_7", 2, 3],
    ["kvsz_orders_eu", 0, 2],
  ];
  for (const [name, of3, of4] of pinned) {
    assert.deepEqual([shardOf(name, 3), shardOf(name, 4)], [of3, of4], name);
  }
  assert.equal(shardOf("kvsz_tenant_1", 1), 0, "one shard holds every source");
});

Deno.test("shardOf: 3,000 tenants spread evenly over 3 shards", () => {
  const counts = [0, 0, 0];
  for (let i = 1; i <= 3000; i++) counts[shardOf(`kvsz_tenant_${i}`, 3)]++;
  for (const n of counts) assert.ok(n > 900 && n < 1100, `shard sizes ${counts}`);
});

Deno.test("lockKey: a signed bigint (pg's int8) of the slot name's hash", () => {
  assert.equal(lockKey(""), -0x340d631b7bdddcdbn); // 0xcbf29ce484222325 as int8
  assert.equal(lockKey("a"), -0x509c23b379fe1374n);
  assert.ok(lockKey("kvsz_tenant_1") >= -(1n << 63n) && lockKey("kvsz_tenant_1") < 1n << 63n);
});

Deno.test("parseShard: I/N, or a StatefulSet pod name ending in -I and N", () => {
  assert.deepEqual(parseShard("0/3"), { index: 0, count: 3 });
  assert.deepEqual(parseShard(" 2 / 3 "), { index: 2, count: 3 });
  assert.deepEqual(parseShard("kvsz-2/3"), { index: 2, count: 3 });
  assert.deepEqual(parseShard("kvsz-prod-eu-11/12"), { index: 11, count: 12 });
  assert.deepEqual(parseShard("0/1"), { index: 0, count: 1 });
});

Deno.test("parseShard: a bad value names where it came from, the value and the fix", () => {
  const cases: [string, RegExp][] = [
    ["", /--shard "" is not I\/N: .*e\.g\. 0\/3.*kvsz-2\/3/],
    ["3", /is not I\/N/],
    ["a/b", /is not I\/N/],
    ["-1/3", /is not I\/N/],
    ["--1/3", /is not I\/N/],
    ["1/3/4", /is not I\/N/],
    ["kvsz/3", /is not I\/N/],
    ["1/0", /"1\/0": the number of shards must be at least 1/],
    ["3/3", /"3\/3": shard 3 does not exist among 3 \(shards are numbered 0 to 2\)/],
    ["kvsz-5/3", /shard 5 does not exist among 3.*replicas equal to N/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseShard(text), message, text);
  }
  assert.throws(() => parseShard("x", "KVSZ_SHARD"), /^Error: KVSZ_SHARD "x" is not I\/N/);
});

Deno.test("keepShard and configForShard keep exactly the shard's sources", () => {
  const db = (database: string, sids: string[]): DatabaseMapping =>
    ({
      database,
      urls: sids.map((sid): SourceUrl => ({
        url: `postgres://h/${database}`,
        sid,
        failover: false,
      })),
      tables: [],
    }) as unknown as DatabaseMapping;
  const sids = Array.from({ length: 12 }, (_, i) => String(i + 1));
  const databases = [db("a", sids), db("b", ["1"]), db("c", ["9"])];
  const config = { databases } as unknown as Config;
  const shard = { index: 1, count: 3 };
  const mine = (d: string, sid: string) => shardOf(kvszObjectName(d, sid), 3) === 1;
  const expected = databases.flatMap((d) =>
    d.urls.filter((u) => mine(d.database, u.sid)).map((u) => `${d.database}/${u.sid}`)
  );
  assert.ok(expected.length > 0 && expected.length < 14, `a real split: ${expected}`);
  const picked = configForShard(config, shard).databases.flatMap((d) =>
    d.urls.map((u) => `${d.database}/${u.sid}`)
  );
  assert.deepEqual(picked, expected);
  const wanted = new Map(
    databases.flatMap((d) =>
      d.urls.map((source) => [`${d.database}/${source.sid}`, { db: d, source }])
    ),
  );
  keepShard(wanted, shard);
  assert.deepEqual([...wanted.keys()], expected);
});
