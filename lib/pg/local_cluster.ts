/**
 * A throwaway PostgreSQL cluster on this machine: its data and socket live in a
 * temporary directory, it listens on a free loopback port with
 * `wal_level=logical`, and it runs as `postgres` when we are root (the server
 * refuses to run as root). Used by the tests, the benchmark and `kvsz demo`.
 */
import { pgBinDir } from "./server_binaries.ts";

/** Options for {@link startLocalCluster}. */
export interface LocalClusterOptions {
  /** Major version, 12 to 18 (default 17). */
  major?: number;
  /** Extra `postgresql.conf` settings (they override the defaults). */
  settings?: Record<string, string | number>;
  /** Directory with initdb/pg_ctl/postgres; found by major version when absent. */
  binDir?: string;
}

/** Superuser created in every local cluster. */
export const LOCAL_SUPERUSER = "postgres";

/** What a {@link LocalCluster} is: its server and where it lives. */
export interface LocalClusterSetup {
  /** Major version. */
  major: number;
  /** The loopback port it listens on. */
  port: number;
  /** The superuser's password. */
  password: string;
  /** Its directory: `data/` and the server log. */
  dir: string;
  /** Directory with initdb/pg_ctl/postgres. */
  binDir: string;
  /** The user the server runs as (`postgres` when we are root); undefined: ourselves. */
  runAs: string | undefined;
}

/** A running local cluster; `await using` stops and removes it. */
export class LocalCluster implements AsyncDisposable, LocalClusterSetup {
  #stopped = false;
  readonly major: number;
  readonly port: number;
  readonly password: string;
  readonly dir: string;
  readonly binDir: string;
  readonly runAs: string | undefined;

  constructor(setup: LocalClusterSetup) {
    this.major = setup.major;
    this.port = setup.port;
    this.password = setup.password;
    this.dir = setup.dir;
    this.binDir = setup.binDir;
    this.runAs = setup.runAs;
  }

  /** Connection URL for `database` as `user` (default: the superuser). */
  url(database = "postgres", user = LOCAL_SUPERUSER, password = this.password): string {
    return `postgres://${encodeURIComponent(user)}:${
      encodeURIComponent(password)
    }@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
  }

  /** Path of the server log file. */
  get logFile(): string {
    return `${this.dir}/server.log`;
  }

  /**
   * Stops the server (fast shutdown by default) and keeps the data. Fails when
   * it has not stopped after `timeoutSeconds` (default 60, pg_ctl's own); the
   * server then goes on shutting down.
   */
  async stop(
    mode: "fast" | "immediate" = "fast",
    opts: { timeoutSeconds?: number } = {},
  ): Promise<void> {
    await this.#pgCtl(["stop", "-m", mode, "-w", "-t", String(opts.timeoutSeconds ?? 60)]);
  }

  /** Starts a stopped server again on the same port. */
  async start(): Promise<void> {
    await this.#pgCtl(["start", "-w", "-t", "60", "-l", this.logFile]);
  }

  /** Promotes a standby: it leaves recovery and accepts writes. */
  async promote(): Promise<void> {
    await this.#pgCtl(["promote", "-w", "-t", "60"]);
  }

  /** Restarts the server. */
  async restart(): Promise<void> {
    await this.#pgCtl(["restart", "-m", "fast", "-w", "-t", "60", "-l", this.logFile]);
  }

  /** Changes settings in postgresql.auto.conf (takes effect on restart or reload). */
  async configure(settings: Record<string, string | number>): Promise<void> {
    const lines = Object.entries(settings).map(([k, v]) => `${k} = '${v}'`).join("\n");
    await Deno.writeTextFile(`${this.dir}/data/postgresql.auto.conf`, `${lines}\n`, {
      append: true,
    });
  }

  /** Stops the server and removes its directory. Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#pgCtl(["stop", "-m", "immediate", "-w"]).catch(() => {});
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }

  async #pgCtl(args: string[]): Promise<void> {
    const [command, ...rest] = args;
    await run(this.runAs, `${this.binDir}/pg_ctl`, [command, "-D", `${this.dir}/data`, ...rest]);
  }
}

/** Creates, configures and starts a local cluster. */
export async function startLocalCluster(opts: LocalClusterOptions = {}): Promise<LocalCluster> {
  const major = opts.major ?? 17;
  const binDir = opts.binDir ?? await pgBinDir(major);
  const runAs = Deno.uid() === 0 ? "postgres" : undefined;
  const dir = await Deno.makeTempDir({ prefix: `kvsz-pg${major}-` });
  const password = `pw${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
  try {
    if (runAs) await chownTo(dir, runAs);
    await Deno.writeTextFile(`${dir}/pwfile`, `${password}\n`);
    if (runAs) await chownTo(`${dir}/pwfile`, runAs);
    await run(runAs, `${binDir}/initdb`, [
      "-D",
      `${dir}/data`,
      "-U",
      LOCAL_SUPERUSER,
      "--pwfile",
      `${dir}/pwfile`,
      "--auth-local=trust",
      "--auth-host=scram-sha-256",
      "-E",
      "UTF8",
      "--locale=C",
      "--no-sync",
    ]);
    const port = await freePort();
    const settings: Record<string, string | number> = {
      port,
      listen_addresses: "127.0.0.1",
      unix_socket_directories: dir,
      wal_level: "logical",
      max_wal_senders: 20,
      max_replication_slots: 20,
      max_connections: 100,
      fsync: "off",
      full_page_writes: "off",
      synchronous_commit: "off",
      shared_buffers: "64MB",
      password_encryption: "scram-sha-256",
      ...opts.settings,
    };
    const conf = Object.entries(settings).map(([k, v]) => `${k} = '${v}'`).join("\n");
    await Deno.writeTextFile(`${dir}/data/postgresql.conf`, `\n${conf}\n`, { append: true });
    await Deno.writeTextFile(
      `${dir}/data/pg_hba.conf`,
      [
        "local all all trust",
        "local replication all trust",
        "host all all 127.0.0.1/32 scram-sha-256",
        "host replication all 127.0.0.1/32 scram-sha-256",
        "",
      ].join("\n"),
    );
    const cluster = new LocalCluster({ major, port, password, dir, binDir, runAs });
    await cluster.start();
    return cluster;
  } catch (e) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }
}

/** Asks the kernel for a free TCP port on the loopback interface. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function chownTo(path: string, user: string): Promise<void> {
  await run(undefined, "chown", ["-R", user, path]);
}

async function run(runAs: string | undefined, cmd: string, args: string[]): Promise<void> {
  const [program, argv] = runAs ? ["runuser", ["-u", runAs, "--", cmd, ...args]] : [cmd, args];
  const out = await new Deno.Command(program, {
    args: argv,
    stdout: "piped",
    stderr: "piped",
    cwd: "/tmp",
  }).output();
  if (!out.success) {
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    throw new Error(`${cmd.split("/").pop()} ${args[0] ?? ""} failed: ${text.trim()}`);
  }
}
