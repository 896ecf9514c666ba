/**
 * Folding: the changes of one table, in commit order, reduced per key to the
 * net effect the destination must end up with. What the destination held
 * before the batch is unknown until the SQL runs, so each key remembers its
 * first operation (INSERT expects the key absent, UPDATE and DELETE expect it
 * present); everything after the first operation is known here, including
 * the anomalies it would meet. Pure code, no SQL.
 */
import type { AnomalyKind } from "./types.ts";
import type { Tuple } from "../source/messages.ts";

/** First operation of a key in a folded run: `I`nsert, `U`pdate or `D`elete. */
export type FirstOp = "I" | "U" | "D";

/** Key values as text, in key order. */
export type KeyValues = (string | null)[];

/** An anomaly found while folding (the destination state was already known). */
export interface FoldAnomaly {
  kind: AnomalyKind;
  key: KeyValues;
}

/** The anomaly met when a key's first operation finds the destination in the unexpected state. */
export function firstOpAnomaly(first: FirstOp): AnomalyKind {
  return first === "I" ? "insert_existing" : first === "U" ? "update_missing" : "delete_missing";
}

/** Picks the key values (source indexes `keyIdx`) out of a tuple; unchanged TOAST reads as undefined. */
export function keyOf(tuple: Tuple, keyIdx: readonly number[]): (string | null | undefined)[] {
  const out = new Array(keyIdx.length);
  for (let i = 0; i < keyIdx.length; i++) out[i] = tuple[keyIdx[i]];
  return out;
}

/**
 * A Map key for key values: distinct for distinct values (text values never
 * contain NUL). A single value written as a canonical integer of up to 15
 * digits becomes that number: a Map hashes it several times faster than a
 * freshly decoded string, and no other text can give the same number.
 */
export function keyText(key: readonly (string | null | undefined)[]): KeyId {
  if (key.length === 1) {
    const v = key[0];
    if (v === null || v === undefined) return "\u0000N";
    return isCanonicalInteger(v) ? Number(v) : v;
  }
  let out = "";
  for (const v of key) out += v === null || v === undefined ? "\u0000N" : `\u0000S${v}`;
  return out;
}

/** What {@link keyText} makes of key values. */
export type KeyId = string | number;

/** True for `0` and `-`?[1-9][0-9]* of at most 15 digits (exact as a double, one spelling per number). */
function isCanonicalInteger(v: string): boolean {
  const n = v.length;
  let i = n > 0 && v.charCodeAt(0) === 45 ? 1 : 0; // '-'
  if (i === n || n - i > 15) return false;
  if (v.charCodeAt(i) === 48) return n === 1; // '0' alone: no leading zeros, no "-0"
  for (; i < n; i++) {
    const c = v.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** True when the tuple has an unchanged-TOAST (undefined) value in one of `cols`. */
export function hasUnchanged(row: Tuple, cols: readonly number[]): boolean {
  for (let i = 0; i < cols.length; i++) if (row[cols[i]] === undefined) return true;
  return false;
}

/** `next` with its unchanged-TOAST values in `cols` taken from `prev` (which may be unchanged too). */
export function mergeUnchanged(prev: Tuple, next: Tuple, cols: readonly number[]): Tuple {
  if (!hasUnchanged(next, cols)) return next;
  const out = next.slice();
  for (let i = 0; i < cols.length; i++) {
    const c = cols[i];
    if (out[c] === undefined) out[c] = prev[c];
  }
  return out;
}

/** `row` with its unchanged-TOAST values in `cols` replaced by NULL (a fresh row keeps nothing). */
export function nullUnchanged(row: Tuple, cols: readonly number[]): Tuple {
  if (!hasUnchanged(row, cols)) return row;
  const out = row.slice();
  for (let i = 0; i < cols.length; i++) if (out[cols[i]] === undefined) out[cols[i]] = null;
  return out;
}

/** Net effect of one key in clone/append mode. */
export interface CloneEntry {
  key: KeyValues;
  first: FirstOp;
  /**
   * Final row (source column order), or null when the key ends absent. An
   * undefined value means "keep the destination's value" (NULL if the row has
   * to be inserted).
   */
  row: Tuple | null;
}

/** Folds clone/append changes by key: the final state per key plus the first operation. */
export class CloneFold {
  /** Entries by {@link keyText}, in order of first appearance. */
  readonly entries: Map<KeyId, CloneEntry> = new Map();
  /** Anomalies known without the destination (after a key's first operation). */
  readonly anomalies: FoldAnomaly[] = [];

  /** @param cols source indexes of the mapped columns (for unchanged-TOAST merging). */
  constructor(readonly cols: readonly number[]) {}

  /** Number of keys. */
  get size(): number {
    return this.entries.size;
  }

  /** Folds an INSERT of `row`. */
  insert(text: KeyId, key: KeyValues, row: Tuple): void {
    const e = this.entries.get(text);
    if (!e) {
      this.entries.set(text, { key, first: "I", row: nullUnchanged(row, this.cols) });
      return;
    }
    if (e.row !== null) this.anomalies.push({ kind: "insert_existing", key });
    e.row = nullUnchanged(row, this.cols);
  }

  /** Folds an UPDATE to `row` (key unchanged). */
  update(text: KeyId, key: KeyValues, row: Tuple): void {
    const e = this.entries.get(text);
    if (!e) {
      this.entries.set(text, { key, first: "U", row });
      return;
    }
    if (e.row === null) {
      this.anomalies.push({ kind: "update_missing", key });
      e.row = nullUnchanged(row, this.cols);
    } else {
      e.row = mergeUnchanged(e.row, row, this.cols);
    }
  }

  /** Folds a DELETE. */
  delete(text: KeyId, key: KeyValues): void {
    const e = this.entries.get(text);
    if (!e) {
      this.entries.set(text, { key, first: "D", row: null });
      return;
    }
    if (e.row === null) this.anomalies.push({ kind: "delete_missing", key });
    e.row = null;
  }
}

/** One version row to insert in history mode. */
export interface Version {
  /**
   * Values (source column order). Undefined means "carry the value of the
   * destination's current row closed by this batch" (NULL when there is none).
   */
  row: Tuple;
  /** kvsz_start: the commit time of the change that created the version... */
  start: string;
  /**
   * ...unless this is true and the destination held no row of the key at all
   * before the batch: then the version is the key's first and starts at
   * '1900-01-01' (an INSERT with no version of the key before it).
   */
  firstStart: boolean;
  /** kvsz_end; null for the open version ('9999-01-01'). */
  end: string | null;
  /** kvsz_deleted. */
  deleted: boolean;
}

/** Net effect of one key in history mode: close the current row, insert the versions. */
export interface HistoryEntry {
  key: KeyValues;
  first: FirstOp;
  /** Commit time of the first operation: when the destination's current row is closed. */
  firstTime: string;
  versions: Version[];
  /** Whether the key exists at the end (internal fold state). */
  present: boolean;
}

/** Folds history changes by key, keeping every version. */
export class HistoryFold {
  /** Entries by {@link keyText}, in order of first appearance. */
  readonly entries: Map<KeyId, HistoryEntry> = new Map();
  /** Anomalies known without the destination (after a key's first operation). */
  readonly anomalies: FoldAnomaly[] = [];
  #versions = 0;

  /** @param cols source indexes of the mapped columns (for unchanged-TOAST carrying). */
  constructor(readonly cols: readonly number[]) {}

  /** Number of keys. */
  get size(): number {
    return this.entries.size;
  }

  /** Number of versions to insert. */
  get versionCount(): number {
    return this.#versions;
  }

  /** Folds an INSERT at commit time `at`. */
  insert(text: KeyId, key: KeyValues, row: Tuple, at: string): void {
    const e = this.entries.get(text);
    const fresh = nullUnchanged(row, this.cols);
    if (!e) {
      this.entries.set(text, {
        key,
        first: "I",
        firstTime: at,
        versions: [{ row: fresh, start: at, firstStart: true, end: null, deleted: false }],
        present: true,
      });
      this.#versions++;
      return;
    }
    if (e.present) {
      this.anomalies.push({ kind: "insert_existing", key });
      e.versions[e.versions.length - 1].end = at;
    }
    // After a first DELETE and nothing else, whether the key ever had a row is
    // only known to the destination.
    const firstStart = e.versions.length === 0;
    e.versions.push({ row: fresh, start: at, firstStart, end: null, deleted: false });
    e.present = true;
    this.#versions++;
  }

  /** Folds an UPDATE to `row` (key unchanged) at commit time `at`. */
  update(text: KeyId, key: KeyValues, row: Tuple, at: string): void {
    const e = this.entries.get(text);
    if (!e) {
      this.entries.set(text, {
        key,
        first: "U",
        firstTime: at,
        versions: [{ row, start: at, firstStart: false, end: null, deleted: false }],
        present: true,
      });
      this.#versions++;
      return;
    }
    if (e.present) {
      const last = e.versions[e.versions.length - 1];
      last.end = at;
      e.versions.push({
        row: mergeUnchanged(last.row, row, this.cols),
        start: at,
        firstStart: false,
        end: null,
        deleted: false,
      });
    } else {
      this.anomalies.push({ kind: "update_missing", key });
      e.versions.push({
        row: nullUnchanged(row, this.cols),
        start: at,
        firstStart: false,
        end: null,
        deleted: false,
      });
      e.present = true;
    }
    this.#versions++;
  }

  /** Folds a DELETE at commit time `at`. */
  delete(text: KeyId, key: KeyValues, at: string): void {
    const e = this.entries.get(text);
    if (!e) {
      this.entries.set(text, { key, first: "D", firstTime: at, versions: [], present: false });
      return;
    }
    if (!e.present) {
      this.anomalies.push({ kind: "delete_missing", key });
      return;
    }
    const last = e.versions[e.versions.length - 1];
    last.end = at;
    last.deleted = true;
    e.present = false;
  }
}
