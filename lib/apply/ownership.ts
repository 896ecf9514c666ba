/**
 * The fence that keeps a kvsz process which lost a source from writing it
 * (`kvsz.owners`, one row per source). The process holding a source's
 * destination lock claims the source at the start of every attempt with a
 * fresh token; every destination transaction that writes the source's data
 * or position reads its row `FOR SHARE` with that token and fails (an error
 * in the statement, so the transaction cannot commit) when the token is
 * another's. A claim updates the row, so it waits for the transactions that
 * passed the fence before it (their row lock), and every transaction after it
 * finds the new token: an old owner's write in flight either commits before
 * the new owner reads the progress, or rolls back. See docs/design-notes.md,
 * "Several instances".
 */
import type { Sql } from "../pg/connect.ts";
import type { SourceKey } from "../config/types.ts";
import { KvszError } from "../errors.ts";
import { errorCode } from "../pg/errors.ts";

/** DDL of `kvsz.owners` (part of the kvsz schema, see progress.ts). */
export const OWNERS_DDL = `CREATE TABLE IF NOT EXISTS kvsz.owners (
    database text NOT NULL,
    sid text NOT NULL,
    token text NOT NULL,
    owner text NOT NULL,
    session_pid int NOT NULL,
    since timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (database, sid))`;

/** A source and, when its writes are fenced, the token of the attempt that claimed it. */
export interface OwnedSource extends SourceKey {
  /** The claim's token (see {@link claimSource}); none: the writes are not fenced (tests). */
  ownerToken?: string | null;
}

/** A write of a source whose claim another kvsz process (or a later attempt) has taken over. */
export class LostOwnership extends KvszError {
  constructor(source: SourceKey, options?: { cause?: unknown }) {
    super(
      `${source.database} sid ${source.sid}: another kvsz process (or a newer attempt of this one) ` +
        `has claimed this source in the destination (kvsz.owners), so this write was rolled back; ` +
        `this process stops applying the source until it holds its lock again`,
      options,
    );
  }
}

/** The claim could not take the row now: a transaction of the previous owner still holds it. */
export class ClaimBusy extends KvszError {
  constructor(source: SourceKey) {
    super(
      `${source.database} sid ${source.sid}: a destination transaction of the source's previous ` +
        `owner is still open (it holds the source's kvsz.owners row); waiting for it to end`,
    );
  }
}

/** Milliseconds a claim waits for the previous owner's transaction before it gives up for now. */
const CLAIM_LOCK_TIMEOUT_MS = 200;

/**
 * Makes `token` the source's owner: later fenced writes with another token
 * fail. Waits (briefly) for the transactions that passed the fence before;
 * throws {@link ClaimBusy} when one is still open. Run it on the connection
 * that holds the source's lock: its backend pid is recorded (`kvsz status`).
 */
export async function claimSource(
  sql: Sql,
  source: SourceKey,
  { token, owner }: { token: string; owner: string },
): Promise<void> {
  try {
    await sql.begin(async (tx) => {
      await tx.unsafe(`SET LOCAL lock_timeout = ${CLAIM_LOCK_TIMEOUT_MS}`);
      await tx.unsafe(
        `INSERT INTO kvsz.owners (database, sid, token, owner, session_pid, since)
         VALUES ($1, $2, $3, $4, pg_backend_pid(), now())
         ON CONFLICT (database, sid) DO UPDATE SET token = excluded.token,
           owner = excluded.owner, session_pid = excluded.session_pid, since = excluded.since`,
        [source.database, source.sid, token, owner],
      );
    });
  } catch (e) {
    if (errorCode(e) === "55P03") throw new ClaimBusy(source); // lock_not_available
    throw e;
  }
}

/** SQLSTATE of the fence's error (`kvsz.owner_fence`): the source is claimed with another token. */
export const FENCE_SQLSTATE = "KV001";

/**
 * `kvsz.owner_fence(database, sid, token)`: true when the source is claimed
 * with `token` (its row stays share-locked until the transaction ends), else
 * an error ({@link FENCE_SQLSTATE}) that aborts the transaction. An error,
 * not an empty result: a COMMIT sent right behind the fenced statement (one
 * round trip) must find the transaction failed.
 */
const FENCE_FUNCTION = `CREATE FUNCTION kvsz.owner_fence(p_database text, p_sid text, p_token text)
  RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fence$
BEGIN
  PERFORM 1 FROM kvsz.owners
    WHERE database = p_database AND sid = p_sid AND token = p_token FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = '${FENCE_SQLSTATE}', MESSAGE = format(
      'kvsz: %s sid %s is claimed by another kvsz process (kvsz.owners): '
      'this write of its former owner is rolled back', p_database, p_sid);
  END IF;
  RETURN true;
END $fence$`;

/** Creates `kvsz.owner_fence` when missing (inside the kvsz schema's DDL transaction). */
export async function ensureOwnerFence(tx: Sql): Promise<void> {
  const [{ present }] = await tx.unsafe(
    `SELECT to_regprocedure('kvsz.owner_fence(text,text,text)') IS NOT NULL AS present`,
  );
  if (!present) await tx.unsafe(FENCE_FUNCTION);
}

/**
 * The query a fenced statement joins (as a CTE) to check its source's claim:
 * one row when the claim is the source's token (locked until the transaction
 * ends), else the statement fails with {@link FENCE_SQLSTATE}. `$1` and `$2`
 * are the database and sid; `tokenParam` the token's. Not fenced: one row.
 */
export function ownedQuery(source: OwnedSource, tokenParam: number): string {
  return source.ownerToken == null
    ? `SELECT true AS owned`
    : `SELECT kvsz.owner_fence($1, $2, $${tokenParam}) AS owned`;
}

/** The token parameter of {@link ownedQuery}: none when not fenced. */
export function ownedParams(source: OwnedSource): string[] {
  return source.ownerToken == null ? [] : [source.ownerToken];
}

/** `e` as {@link LostOwnership} when the fence raised it, else `e`. */
export function ownershipError(e: unknown, source: SourceKey): unknown {
  return errorCode(e) === FENCE_SQLSTATE ? new LostOwnership(source, { cause: e }) : e;
}

/**
 * Inside a destination transaction: fails with {@link LostOwnership} unless
 * the source is still claimed with its token, and keeps the claim from moving
 * until the transaction ends. Nothing when the source is not fenced.
 */
export async function fenceOwner(tx: Sql, source: OwnedSource): Promise<void> {
  if (source.ownerToken == null) return;
  // Sent by the call itself: statements queued after the call run after it.
  await tx.unsafe(ownedQuery(source, 3), [source.database, source.sid, ...ownedParams(source)])
    .execute().catch((e) => {
      throw ownershipError(e, source);
    });
}

/**
 * Runs `write` behind the source's fence ({@link fenceOwner}, sent first and
 * awaited after it): in a savepoint, a source another process has claimed
 * fails there alone, with {@link LostOwnership}.
 */
export async function fenced(
  tx: Sql,
  source: OwnedSource,
  write: () => Promise<void>,
): Promise<void> {
  const fence = fenceOwner(tx, source);
  fence.catch(() => {}); // awaited below, whatever the writes do
  try {
    await write();
  } finally {
    await fence; // its failure explains the writes' (the savepoint is aborted)
  }
}

/** A source's claim as `kvsz status` shows it. */
export interface OwnerRow {
  database: string;
  sid: string;
  /** Who claimed it: host, process id and shard. */
  owner: string;
  since: string;
  /** True while the claiming session is still connected (it holds the source's lock). */
  connected: boolean;
}

/** Every row of `kvsz.owners` (none before kvsz first ran). */
export async function readOwners(sql: Sql): Promise<OwnerRow[]> {
  const [{ present }] = await sql.unsafe(
    `SELECT to_regclass('kvsz.owners') IS NOT NULL AS present`,
  );
  if (!present) return [];
  const rows = await sql.unsafe(
    `SELECT database, sid, owner, since::text AS since,
            EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = o.session_pid) AS connected
       FROM kvsz.owners o`,
  );
  return rows.map((r) => ({
    database: r.database,
    sid: r.sid,
    owner: r.owner,
    since: r.since,
    connected: r.connected === true,
  }));
}

/** The owner description of a source's claim, or null when none is recorded. */
export async function readOwner(sql: Sql, source: SourceKey): Promise<string | null> {
  const rows = await sql.unsafe(
    `SELECT owner FROM kvsz.owners WHERE database = $1 AND sid = $2`,
    [source.database, source.sid],
  );
  return rows.length > 0 ? String(rows[0].owner) : null;
}
