/**
 * Splitting the sources of one config across several kvsz processes
 * (`kvsz run --shard I/N`): a source belongs to shard `fnv1a64(slot name) mod
 * N`, where the slot name is `kvszObjectName(database, sid)` and the hash is
 * 64-bit FNV-1a over its UTF-8 bytes. A pure function of the name: every
 * machine, version and process computes the same split, and adding a source
 * moves no other one. Changing N moves about (N-1)/N of the sources; the
 * destination-side locks (source_locks.ts) keep that safe.
 */
import type { Config, DatabaseMapping, SourceUrl } from "../config/types.ts";
import { kvszObjectName } from "../pg/identifiers.ts";

/** One shard of N: `index` from 0 to `count - 1`. */
export interface Shard {
  index: number;
  count: number;
}

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK_64 = (1n << 64n) - 1n;

/** 64-bit FNV-1a of `text`'s UTF-8 bytes (unsigned). */
export function fnv1a64(text: string): bigint {
  let hash = FNV_OFFSET;
  for (const byte of new TextEncoder().encode(text)) {
    hash = ((hash ^ BigInt(byte)) * FNV_PRIME) & MASK_64;
  }
  return hash;
}

/** The shard (0 to `count - 1`) a source with slot name `slotName` belongs to. */
export function shardOf(slotName: string, count: number): number {
  return Number(fnv1a64(slotName) % BigInt(count));
}

/** True when the source (`database`, `sid`) belongs to `shard`. */
export function inShard(shard: Shard, database: string, sid: string): boolean {
  return shardOf(kvszObjectName(database, sid), shard.count) === shard.index;
}

/** `I/N`, as the flag takes it. */
export function describeShard(shard: Shard): string {
  return `${shard.index}/${shard.count}`;
}

/**
 * Parses `I/N` (`0/3`), or a StatefulSet pod name ending in `-I` and N
 * (`kvsz-2/3`: the pod's ordinal is its shard). `origin` names where the text
 * came from in the error (`--shard`, `KVSZ_SHARD`).
 */
export function parseShard(text: string, origin = "--shard"): Shard {
  const m = /^\s*(?:[a-z0-9][a-z0-9.-]*-)?(\d+)\s*\/\s*(\d+)\s*$/i.exec(text);
  if (!m) {
    throw new Error(
      `${origin} "${text}" is not I/N: give the shard's index (from 0) and the number of ` +
        `shards, e.g. 0/3, or a StatefulSet pod name and the number, e.g. kvsz-2/3`,
    );
  }
  const [index, count] = [Number(m[1]), Number(m[2])];
  if (count < 1) throw new Error(`${origin} "${text}": the number of shards must be at least 1`);
  if (index >= count) {
    throw new Error(
      `${origin} "${text}": shard ${index} does not exist among ${count} ` +
        `(shards are numbered 0 to ${count - 1}); is the StatefulSet's replicas equal to N?`,
    );
  }
  return { index, count };
}

/** Keeps only the entries of `wanted` (sources by key) that belong to `shard`. */
export function keepShard(
  wanted: Map<string, { db: DatabaseMapping; source: SourceUrl }>,
  shard: Shard,
): void {
  for (const [key, { db, source }] of wanted) {
    if (!inShard(shard, db.database, source.sid)) wanted.delete(key);
  }
}

/** `config` with only the sources of `shard` (database entries left without one are dropped). */
export function configForShard(config: Config, shard: Shard): Config {
  const databases = config.databases
    .map((d) => ({ ...d, urls: d.urls.filter((u) => inShard(shard, d.database, u.sid)) }))
    .filter((d) => d.urls.length > 0);
  return { ...config, databases };
}
