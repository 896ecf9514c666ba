/**
 * A PgBouncer for tests (Debian's `pgbouncer` package; `.ci/run` installs it):
 * transaction pooling, trust authentication on 127.0.0.1, one database alias
 * whose target a test can change (write a new ini, then RELOAD). It runs as
 * `postgres` when we are root (PgBouncer refuses root), as the clusters do.
 */
import { freePort } from "../../lib/pg/local_cluster.ts";
import { makeTempDir } from "./temp_dirs.ts";

/** Where PgBouncer is looked for. */
const PROGRAMS = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"];

/** The PgBouncer program, or null when it is not installed. */
export function pgbouncerProgram(): string | null {
  for (const p of PROGRAMS) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not there */ }
  }
  return null;
}

/** A running PgBouncer. */
export class TestPgBouncer implements AsyncDisposable {
  private constructor(
    readonly port: number,
    readonly dir: string,
    readonly ini: string,
  ) {}

  /** URL of database `alias` through PgBouncer (user postgres, trusted). */
  url(alias: string): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${alias}`;
  }

  /** URL of the admin console. */
  get adminUrl(): string {
    return this.url("pgbouncer");
  }

  /** The ini text with `alias` pointing at `target` (a libpq keyword string). */
  iniText(alias: string, target: string): string {
    return [
      "[databases]",
      `${alias} = ${target}`,
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${this.port}`,
      `unix_socket_dir = `,
      "auth_type = trust",
      `auth_file = ${this.dir}/userlist.txt`,
      "admin_users = postgres",
      "pool_mode = transaction",
      "ignore_startup_parameters = extra_float_digits",
      `pidfile = ${this.dir}/pgbouncer.pid`,
      `logfile = ${this.dir}/pgbouncer.log`,
      "",
    ].join("\n");
  }

  /** Starts PgBouncer with `alias` pointing at `target` (libpq keywords: host, port, dbname, user, password). */
  static async start(alias: string, target: string): Promise<TestPgBouncer> {
    const program = pgbouncerProgram();
    if (!program) throw new Error("pgbouncer is not installed (apt-get install -y pgbouncer)");
    const dir = await makeTempDir("kvsz-pgbouncer-");
    const b = new TestPgBouncer(freePort(), dir, `${dir}/pgbouncer.ini`);
    await Deno.writeTextFile(`${dir}/userlist.txt`, `"postgres" ""\n`);
    await Deno.writeTextFile(b.ini, b.iniText(alias, target));
    const root = Deno.uid() === 0;
    if (root) await command("chown", ["-R", "postgres", dir]);
    const [cmd, args] = root
      ? ["runuser", ["-u", "postgres", "--", program, "-d", b.ini]]
      : [program, ["-d", b.ini]];
    await command(cmd, args);
    for (let i = 0;; i++) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port: b.port })).close();
        return b;
      } catch (e) {
        if (i >= 100) throw new Error(`pgbouncer does not listen on ${b.port}: ${e}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Stops PgBouncer (SIGTERM to the pid it wrote). */
  async stop(): Promise<void> {
    const pid = Number(
      (await Deno.readTextFile(`${this.dir}/pgbouncer.pid`).catch(() => "")).trim(),
    );
    if (pid > 0) {
      try {
        Deno.kill(pid, "SIGTERM");
      } catch { /* gone */ }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

async function command(cmd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}
