/**
 * A switchover's record in the destination (`kvsz.switchovers`): when the
 * source's writes stopped, its final LSN and when the destination was ready,
 * so that a re-run after an interruption reports the whole write downtime;
 * with `--reverse`, the reverse config written (while it is set and the
 * source fenced, `kvsz run` does not stream the source: see
 * {@link stoppedForReverse}).
 */
import type { Sql } from "../pg/connect.ts";

const DDL = `CREATE TABLE IF NOT EXISTS kvsz.switchovers (
  database text NOT NULL,
  sid text NOT NULL,
  fenced_at timestamptz NOT NULL,
  final_lsn pg_lsn,
  ready_at timestamptz,
  PRIMARY KEY (database, sid))`;
/** Added with `--reverse`. */
const REVERSE_COLUMN = `ALTER TABLE kvsz.switchovers ADD COLUMN IF NOT EXISTS reverse_config text`;

/**
 * Records that the source's writes stopped at `fencedAt` (a new fence), or
 * keeps the time already recorded (`keepEarlier`: the fence was already on);
 * returns the recorded time.
 */
export async function recordFence(
  dst: Sql,
  key: { database: string; sid: string },
  opts: { fencedAt: Date; keepEarlier: boolean },
): Promise<Date> {
  await dst.unsafe(`CREATE SCHEMA IF NOT EXISTS kvsz`);
  await dst.unsafe(DDL);
  await dst.unsafe(REVERSE_COLUMN);
  const [row] = await dst.unsafe(
    `INSERT INTO kvsz.switchovers AS s (database, sid, fenced_at) VALUES ($1, $2, $3::timestamptz)
     ON CONFLICT (database, sid) DO UPDATE
        SET fenced_at = CASE WHEN $4 THEN s.fenced_at ELSE excluded.fenced_at END,
            reverse_config = CASE WHEN $4 THEN s.reverse_config END,
            final_lsn = NULL, ready_at = NULL
     RETURNING to_char(fenced_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`,
    [key.database, key.sid, opts.fencedAt.toISOString(), opts.keepEarlier],
  );
  return new Date(row.at);
}

/** Records the final LSN the destination applied and when it was ready. */
export async function recordReady(
  dst: Sql,
  key: { database: string; sid: string },
  opts: { finalLsn: string; readyAt: Date },
): Promise<void> {
  await dst.unsafe(
    `UPDATE kvsz.switchovers SET final_lsn = $3::pg_lsn, ready_at = $4::timestamptz
      WHERE database = $1 AND sid = $2`,
    [key.database, key.sid, opts.finalLsn, opts.readyAt.toISOString()],
  );
}

/** Records the reverse config a `--reverse` switchover wrote: from now on the forward stream stops. */
export async function recordReverse(
  dst: Sql,
  key: { database: string; sid: string },
  configPath: string,
): Promise<void> {
  await dst.unsafe(
    `UPDATE kvsz.switchovers SET reverse_config = $3 WHERE database = $1 AND sid = $2`,
    [key.database, key.sid, configPath],
  );
}

/**
 * The reverse config of a `--reverse` switchover of the source, or null when
 * there was none (or the fence was put up anew since).
 */
export async function reverseConfigOf(
  dst: Sql,
  key: { database: string; sid: string },
): Promise<string | null> {
  const [reg] = await dst.unsafe(
    `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                     WHERE attrelid = to_regclass('kvsz.switchovers')
                       AND attname = 'reverse_config' AND NOT attisdropped) AS present`,
  );
  if (!reg.present) return null;
  const [row] = await dst.unsafe(
    `SELECT reverse_config FROM kvsz.switchovers WHERE database = $1 AND sid = $2`,
    [key.database, key.sid],
  );
  return row?.reverse_config ?? null;
}
