/**
 * Whether a source's slot may be streamed from, given the progress kvsz
 * stored in the destination. kvsz confirms to a slot only what that progress
 * already holds (applied commits, and WAL with nothing for it once recorded),
 * so a slot confirmed beyond it, a slot gone, or a server whose WAL ends
 * before it has lost changes kvsz never applied: streaming on would skip them
 * silently. The source is copied again instead.
 */
import { formatLsn } from "../pg/lsn.ts";
import type { SlotInfo } from "./slot.ts";

/** What {@link recopyReason} compares. */
export interface SlotFacts {
  /** The slot's name (for the message). */
  name: string;
  /** The slot as the source shows it; null when it does not exist. */
  slot: SlotInfo | null;
  /** End LSN of the last progress stored in the destination; null when none is stored. */
  storedLsn: bigint | null;
  /** The end of the source's WAL (see `readWalEnd`). */
  walEnd: bigint;
}

/** Why the source must be copied again rather than streamed from its slot; null when the slot is sound. */
export function recopyReason(f: SlotFacts): string | null {
  if (f.storedLsn === null) return null;
  const stored = formatLsn(f.storedLsn);
  if (!f.slot) {
    return `replication slot ${f.name} does not exist, but the destination holds this source's ` +
      `progress up to ${stored}: the slot was dropped, or this server never had it (a standby ` +
      `promoted without a synchronized slot: see README, Failover)`;
  }
  const confirmed = f.slot.confirmedFlushLsn;
  if (confirmed !== null && confirmed > f.storedLsn) {
    return `replication slot ${f.name} has confirmed_flush_lsn ${formatLsn(confirmed)}, ` +
      `ahead of the progress stored in the destination (${stored}): the changes in between were ` +
      `confirmed without kvsz applying them (the slot was dropped and created again, or advanced, ` +
      `behind kvsz's back; or the destination lost commits, e.g. restored from a backup)`;
  }
  if (f.walEnd < f.storedLsn) {
    return `the source's WAL ends at ${formatLsn(f.walEnd)}, before the progress stored in the ` +
      `destination (${stored}) for replication slot ${f.name}: this server lacks transactions ` +
      `kvsz already applied (a standby promoted before it received them: list its slot in the ` +
      `primary's synchronized_standby_slots, see README, Failover; or a source restored from a backup)`;
  }
  return null;
}
