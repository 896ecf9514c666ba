/**
 * The web console in a real browser (Debian's chromium driven by
 * puppeteer-core): the page asks for the token, then shows the source
 * streaming; from the source's page a table is cloned (database mode, no
 * target yet) and its rows arrive and stream. A screenshot of each page is
 * kept under `$KVSZ_TEST_OUTPUT/console` (default `.cache/test-output/console`
 * in the repository). Without a chromium that runs, the test fails saying so.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { clusterSuite } from "../support/cluster.ts";
import {
  KvszProcess,
  runConfig,
  tableRows,
  waitFor,
  waitForEqualRows,
  writeConfig,
} from "../support/kvsz.ts";
import { freePort } from "../../lib/pg/local_cluster.ts";

const TOKEN = "console-test-token-7d1e";

/** Where the screenshots go (kept after the test). */
function outputDir(): string {
  const base = Deno.env.get("KVSZ_TEST_OUTPUT") ??
    new URL("../../.cache/test-output", import.meta.url).pathname;
  const dir = `${base}/console`;
  Deno.mkdirSync(dir, { recursive: true });
  return dir;
}

/** Debian's chromium, headless; fails naming the fix when it is missing or cannot start. */
async function launch(): Promise<Browser> {
  const path = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });
  if (!path) {
    throw new Error(
      "the console test needs Debian's chromium and found none: apt-get install -y chromium " +
        "(.ci/run installs it)",
    );
  }
  try {
    return await puppeteer.launch({
      executablePath: path,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    });
  } catch (e) {
    throw new Error(`chromium (${path}) cannot run, so the console is not tested: ${e}`);
  }
}

/** Waits until the page shows `selector` with text matching `pattern`. */
async function waitForText(page: Page, selector: string, pattern: RegExp): Promise<void> {
  await waitFor(async () => {
    const text = await page.$eval(selector, (e) => e.textContent ?? "").catch(() => "");
    return pattern.test(text);
  }, { what: `${selector} showing ${pattern}`, context: () => page.content() });
}

clusterSuite("kvsz run: web console", {
  "token, sources, a table cloned from the console arrives and streams": async (c) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    for (const t of ["t1", "t2"]) {
      await src.unsafe(`CREATE TABLE ${t} (id int PRIMARY KEY, v text)`);
      await src.unsafe(`INSERT INTO ${t} SELECT g, 'v' || g FROM generate_series(1, 30) g`);
    }
    await dst.unsafe(`CREATE TABLE t1 (id int PRIMARY KEY, v text)`);
    const port = freePort();
    const config = {
      ...runConfig(c, srcDb, dstDb, { t1: null }),
      metrics: { listen: `127.0.0.1:${port}` },
      api: { token_sha256: createHash("sha256").update(TOKEN).digest("hex") },
      map_store: "destination",
    };
    await using kvsz = KvszProcess.start(["run", "--config", await writeConfig(config)]);
    await kvsz.waitForOutput(/streaming from/);
    const browser = await launch();
    const shots = outputDir();
    try {
      const page = await browser.newPage();
      await page.setViewport({ width: 1200, height: 700 });
      await page.goto(`http://127.0.0.1:${port}/`); // leads to /console
      assert.match(page.url(), /\/console$/);
      await waitForText(page, "#msg", /no authorization header/);
      await page.type("#token", TOKEN);
      await page.click("#login button");
      await waitForText(page, "#sources", /streaming/);
      await page.screenshot({ path: `${shots}/sources.png` });

      await page.click(`#sources a`);
      await waitForText(page, `#tables tr[data-table="t2"]`, /clone/);
      await page.screenshot({ path: `${shots}/source-before-clone.png` });
      await page.click(`#tables tr[data-table="t2"] button[data-action="clone"]`);
      await waitForText(page, "#msg", /clone t2: done/);
      const rows = (t: string) => () => tableRows(src, t);
      await waitForEqualRows(rows("t2"), () => tableRows(dst, "t2"), { kvsz });
      await src.unsafe(`INSERT INTO t2 VALUES (31, 'streamed'); INSERT INTO t1 VALUES (31, 'too')`);
      await waitForEqualRows(rows("t2"), () => tableRows(dst, "t2"), { kvsz });
      await waitForEqualRows(rows("t1"), () => tableRows(dst, "t1"), { kvsz });
      // Replicated, present, its 30 rows copied and the streamed insert counted.
      await waitForText(page, `#tables tr[data-table="t2"]`, /^t2yesyesclonet2\s*30\s*1recopy$/);
      await waitForText(page, "h2", /streaming/);
      await page.screenshot({ path: `${shots}/source.png` });

      await page.goto(`http://127.0.0.1:${port}/console#/map`);
      await waitForText(page, "#map", /t2/);
      await page.screenshot({ path: `${shots}/map.png` });
      await page.goto(`http://127.0.0.1:${port}/console#/changes`);
      await waitForText(page, "#changes", /api\.token_sha256\s*clone map/);
      await page.screenshot({ path: `${shots}/changes.png` });
      console.log(`console screenshots in ${shots}`);
    } finally {
      await browser.close();
    }
    assert.equal(await kvsz.stop(), 0);
  },
});
