/** Steps the scenarios share: wait for a marker, catch up untimed, compare source and destination. */
import type { BenchContext } from "../context.ts";
import { type Engine, StalledError } from "../engines.ts";
import type { Sql } from "../servers.ts";
import { now, say, waitUntil } from "../util.ts";
import { insertMarker, markerCount, pgbenchDigest, type TargetForm } from "../workload.ts";

/** Waits until marker `id` is in the engine's destination (`copies` rows of it in fan-in). */
export async function waitMarker(
  ctx: BenchContext,
  engine: Engine,
  id: number,
  copies = 1,
  timeoutMs = 600_000,
): Promise<void> {
  const dest = ctx.dest.sql(engine.destDb);
  await waitUntil(async () => (await markerCount(dest, id)) >= copies, {
    what: `${engine.label}: marker ${id} at the destination`,
    timeoutMs,
    intervalMs: 20,
    alive: () => engine.checkAlive(),
  });
}

/** Inserts a marker on `source` and waits for it (untimed: brings a running engine up to date). */
export async function catchUp(ctx: BenchContext, engine: Engine, source: Sql): Promise<void> {
  const id = await insertMarker(source, `catch up ${engine.label}`);
  await waitMarker(ctx, engine, id);
}

/** Throws when the pgbench tables differ between source and destination. */
export async function verify(
  source: Sql,
  dest: Sql,
  form: TargetForm,
  what: string,
  sid?: string,
): Promise<void> {
  const [a, b] = [await pgbenchDigest(source, "source"), await pgbenchDigest(dest, form, sid)];
  if (a !== b) {
    throw new Error(
      `${what}: destination differs from source\n  source:      ${a}\n  destination: ${b}`,
    );
  }
}

/**
 * Starts an engine and waits until it streams; returns the seconds until
 * every table was copied and until streaming began. A kvsz that hangs before
 * streaming (no output for 15 s; it logs at least every 10 s while copying)
 * is killed and started again, at most twice; the incident goes into the
 * report's notes and the streaming time is null.
 */
export async function startStreaming(
  ctx: BenchContext,
  engine: Engine,
  what: string,
  timed: boolean,
): Promise<{ streaming: number | null; copied: number | null }> {
  let copied: number | null = null;
  for (let attempt = 1;; attempt++) {
    const t0 = now();
    await engine.start();
    try {
      await engine.waitStreaming();
      if (attempt === 1) copied = engine.copiedAt === null ? null : (engine.copiedAt - t0) / 1000;
      return { streaming: attempt === 1 ? (now() - t0) / 1000 : null, copied };
    } catch (e) {
      if (attempt === 1 && engine.copiedAt !== null) copied = (engine.copiedAt - t0) / 1000;
      if (!(e instanceof StalledError) || attempt >= 3) throw e;
      say(`  ${what}: ${e.message}`);
      ctx.rec.notes.push(
        `${what}: ${engine.label} hung ${
          copied === null
            ? "during its initial copy"
            : "after copying every table, before streaming"
        } (no output for 15 s); killed and restarted${
          !timed ? " (untimed step)" : copied === null ? ", no timing this round" : ""
        }`,
      );
      ctx.rec.incidents++;
      await engine.kill();
      if (copied !== null) {
        // The copy itself finished on the first attempt: keep its time.
        await engine.start();
        await engine.waitStreaming();
        return { streaming: null, copied };
      }
    }
  }
}
