/**
 * A database entry with `all_tables` (the natural map of an upgrade): every
 * table of the source's schemas, same schema and name at the destination,
 * exclusions by pattern; `validate` names what logical replication does not
 * carry (unlogged tables, materialized views, large objects) with what to do.
 */
import assert from "node:assert/strict";
import { clusterSuite } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitForEqualRows, writeConfig } from "../support/kvsz.ts";
import { runCli } from "../support/run_cli.ts";

const SOURCE_SCHEMA = `
  CREATE SCHEMA app;
  CREATE TABLE public.customers (id int PRIMARY KEY, name text);
  CREATE TABLE app.orders (id bigint PRIMARY KEY, customer int, total numeric(10,2));
  CREATE TABLE app.audit_log (id int PRIMARY KEY, what text);
  CREATE UNLOGGED TABLE app.scratch (id int PRIMARY KEY);
  CREATE MATERIALIZED VIEW app.totals AS SELECT customer, sum(total) FROM app.orders GROUP BY 1;
  INSERT INTO public.customers SELECT g, 'c' || g FROM generate_series(1, 200) g;
  INSERT INTO app.orders SELECT g, g % 200 + 1, g * 1.25 FROM generate_series(1, 500) g;
  INSERT INTO app.audit_log VALUES (1, 'not wanted');
  SELECT lo_from_bytea(0, 'a large object');
`;

clusterSuite("all_tables: every table of the source", {
  "maps every table to the same schema and name, leaves out the excluded, says what is not carried":
    async (c) => {
      const srcDb = await c.createDatabase("shop");
      const dstDb = await c.createDatabase("shop_new");
      const src = c.sql(srcDb);
      const dst = c.sql(dstDb);
      await src.unsafe(SOURCE_SCHEMA);
      await dst.unsafe(`
        CREATE SCHEMA app;
        CREATE TABLE public.customers (id int PRIMARY KEY, name text);
        CREATE TABLE app.orders (id bigint PRIMARY KEY, customer int, total numeric(10,2));
      `);
      const path = await writeConfig({
        destination: { url: c.url(dstDb) },
        databases: [{
          database: "shop",
          urls: [{ url: c.url(srcDb), sid: "1" }],
          all_tables: { exclude: ["app.audit_*"] },
        }],
        apply: { commit_interval_ms: 50 },
        metrics: { listen: "" },
        log: { level: "info", format: "text" },
      });

      const checked = await runCli(["validate", "--config", path], { timeoutMs: 60_000 });
      assert.equal(checked.code, 0, checked.output);
      assert.match(checked.stdout, /all_tables: 2 table\(s\) mapped/);
      assert.match(checked.stdout, /WARN .*unlogged tables are not carried.*app\.scratch/s);
      assert.match(checked.stdout, /WARN .*materialized views are not carried.*app\.totals/s);
      assert.match(checked.stdout, /WARN .*1 large object/s);
      assert.match(checked.stdout, /table app\.orders/);
      assert.doesNotMatch(checked.stdout, /audit_log/);

      await using kvsz = KvszProcess.start(["run", "--config", path]);
      for (const table of ["public.customers", "app.orders"]) {
        await waitForEqualRows(
          () => tableRows(src, table, "*"),
          () => tableRows(dst, table, "*"),
          { what: `${table} copied`, kvsz },
        );
      }
      await src.unsafe(`INSERT INTO app.orders VALUES (501, 3, 9.99)`);
      await src.unsafe(`UPDATE public.customers SET name = 'renamed' WHERE id = 7`);
      await waitForEqualRows(
        () => tableRows(src, "app.orders", "*"),
        () => tableRows(dst, "app.orders", "*"),
        { what: "app.orders streamed", kvsz },
      );
      await waitForEqualRows(
        () => tableRows(src, "public.customers", "*"),
        () => tableRows(dst, "public.customers", "*"),
        { what: "public.customers streamed", kvsz },
      );
      const [audit] = await dst.unsafe(
        `SELECT to_regclass('app.audit_log') IS NULL AS absent`,
      );
      assert.equal(audit.absent, true, "the excluded table is not mapped");
      assert.equal(await kvsz.stop("SIGTERM"), 0, kvsz.output);
    },
});
