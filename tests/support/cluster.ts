/**
 * Real PostgreSQL clusters for tests: start one per test file (or per matrix
 * version), give each test its own database, stop everything at the end.
 */
import postgres from "postgres";
import { LocalCluster, startLocalCluster } from "../../lib/pg/local_cluster.ts";
import { tempDirScope } from "./temp_dirs.ts";

export { LocalCluster };

/** Majors selected for matrix tests by `KVSZ_TEST_PG_VERSIONS` (default 17). */
export function testVersions(): number[] {
  const raw = Deno.env.get("KVSZ_TEST_PG_VERSIONS") ?? "17";
  return raw.split(",").map((v) => Number(v.trim())).filter((v) => v > 0);
}

/** A cluster plus helpers to open clients and make fresh databases. */
export class TestCluster implements AsyncDisposable {
  #clients: postgres.Sql[] = [];
  #dbCounter = 0;
  constructor(readonly server: LocalCluster) {}

  get major(): number {
    return this.server.major;
  }

  /** Connection URL (superuser unless `user` is given). */
  url(database = "postgres", user?: string, password?: string): string {
    return this.server.url(database, user, password);
  }

  /** A superuser client on `database`, closed with the cluster. */
  sql(database = "postgres"): postgres.Sql {
    const sql = postgres(this.url(database), { max: 2, onnotice: () => {} });
    this.#clients.push(sql);
    return sql;
  }

  /** Creates a new empty database with a unique name and returns its name. */
  async createDatabase(prefix = "db"): Promise<string> {
    const name = `${prefix}_${++this.#dbCounter}_${crypto.randomUUID().slice(0, 6)}`;
    const admin = postgres(this.url(), { max: 1, onnotice: () => {} });
    try {
      await admin.unsafe(`CREATE DATABASE "${name}"`);
    } finally {
      await admin.end();
    }
    return name;
  }

  /** A new source and a new destination database, with a client on each. */
  async sourceAndDestination(): Promise<
    { srcDb: string; dstDb: string; src: postgres.Sql; dst: postgres.Sql }
  > {
    const srcDb = await this.createDatabase("src");
    const dstDb = await this.createDatabase("dst");
    return { srcDb, dstDb, src: this.sql(srcDb), dst: this.sql(dstDb) };
  }

  /** Closes the clients opened through {@link sql}. */
  async closeClients(): Promise<void> {
    await Promise.all(this.#clients.splice(0).map((c) => c.end({ timeout: 1 })));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.closeClients().catch(() => {});
    await this.server.destroy();
  }
}

/** Starts a test cluster of `major` (default: the first of {@link testVersions}). */
export async function startCluster(
  opts: { major?: number; settings?: Record<string, string | number> } = {},
): Promise<TestCluster> {
  const server = await startLocalCluster({
    major: opts.major ?? testVersions()[0],
    settings: opts.settings,
  });
  return new TestCluster(server);
}

/**
 * One Deno test per selected server version (`KVSZ_TEST_PG_VERSIONS`, or
 * `opts.major`) that starts a cluster, runs each case as a step against it,
 * and stops it (and removes the test's temporary directories) at the end even
 * when a step fails.
 */
export function clusterSuite(
  name: string,
  cases: Record<string, (c: TestCluster) => Promise<void>>,
  opts: {
    major?: number;
    minMajor?: number;
    maxMajor?: number;
    settings?: Record<string, string | number>;
  } = {},
): void {
  const majors = opts.major ? [opts.major] : testVersions();
  const fits = (m: number) => m >= (opts.minMajor ?? 0) && m <= (opts.maxMajor ?? Infinity);
  for (const major of majors.filter(fits)) {
    Deno.test({
      name: `${name} [PostgreSQL ${major}]`,
      sanitizeOps: false,
      sanitizeResources: false,
      fn: async (t) => {
        await using _dirs = tempDirScope();
        await using cluster = await startCluster({ settings: opts.settings, major });
        const only = Deno.env.get("KVSZ_TEST_CASE"); // a regex: run only the cases it matches
        for (const [caseName, fn] of Object.entries(cases)) {
          if (only && !new RegExp(only).test(caseName)) continue;
          // A case's clients close with it: a long suite stays under max_connections.
          await t.step(caseName, async () => {
            try {
              await fn(cluster);
            } finally {
              await cluster.closeClients();
            }
          });
        }
      },
    });
  }
}
