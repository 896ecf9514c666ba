/**
 * The set-based writer of one route's changes inside an open destination
 * transaction. Changes are added in commit order and folded by key; `flush`
 * turns each run into one statement per chunk of keys (plus one statement per
 * key change, TRUNCATE, or keyless UPDATE/DELETE, in order), applies exactly
 * the net effect, reports anomalies instead of failing on them, and empties
 * the buffer.
 */
import type { Sql } from "../pg/connect.ts";
import type { Tuple } from "../source/messages.ts";
import {
  type CloneEntry,
  CloneFold,
  HistoryFold,
  type KeyId,
  keyOf,
  keyText,
  type KeyValues,
} from "./fold.ts";
import { type RouteShape, routeShape } from "./sql_common.ts";
import {
  applyCloneChunk,
  applyCloneKeyChange,
  applyCloneNewKeys,
  applyCloneTruncate,
  applyCloneUpdates,
  coversKey,
} from "./sql_clone.ts";
import type { KeyChange, StepResult } from "./sql_step.ts";
import { applyHistoryChunk, applyHistoryKeyChange, applyHistoryTruncate } from "./sql_history.ts";
import {
  insertRows,
  type KeylessDelete,
  keylessDelete,
  keylessHistoryDelete,
  keylessHistoryUpdate,
  type KeylessUpdate,
  keylessUpdate,
} from "./sql_keyless.ts";
import type { Anomaly, Change, TableRoute } from "./types.ts";

/** Changes applied by one flush, by kind (changes a mode ignores are not counted). */
export interface OpCounts {
  insert: number;
  update: number;
  delete: number;
  truncate: number;
}

/** What one {@link TableBatch.flush} did. */
export interface FlushResult {
  /** Destination rows inserted, updated or deleted (history: closed rows plus new versions). */
  rowsWritten: number;
  /** Anomalies met (and converged), with their keys. */
  anomalies: Anomaly[];
  ops: OpCounts;
}

/** Limits of one set-based statement. */
export interface ChunkLimits {
  /** Max keys (or versions, or inserted rows) per statement. */
  rows: number;
  /** Max bytes of values per statement (approximate). */
  bytes: number;
}

/** Default statement limits: large enough to amortize the round trip, small enough to keep memory flat. */
const DEFAULT_CHUNK_LIMITS: ChunkLimits = { rows: 20_000, bytes: 16 << 20 };

type Segment =
  | { t: "clone"; fold: CloneFold }
  | { t: "history"; fold: HistoryFold }
  | { t: "inserts"; rows: Tuple[] }
  | ({ t: "keyless_update" } & KeylessUpdate)
  | ({ t: "keyless_delete" } & KeylessDelete)
  | ({ t: "key_change" } & KeyChange)
  | { t: "truncate"; at: string };

/** Buffers one route's changes and writes their net effect set-based. */
export class TableBatch {
  readonly route: TableRoute;
  readonly #shape: RouteShape;
  readonly #history: boolean;
  readonly #append: boolean;
  readonly #keyless: boolean;
  /** A unique index covers the key: new keys take a plain INSERT, present ones a plain UPDATE. */
  readonly #plain: boolean;
  readonly #limits: ChunkLimits;
  #segments: Segment[] = [];
  #size = 0;
  #ops: OpCounts = { insert: 0, update: 0, delete: 0, truncate: 0 };

  constructor(route: TableRoute, limits: ChunkLimits = DEFAULT_CHUNK_LIMITS) {
    this.route = route;
    this.#shape = routeShape(route);
    this.#history = route.mode === "history";
    this.#append = route.mode === "append";
    this.#keyless = route.keyless || route.key.length === 0;
    this.#plain = !this.#keyless && !this.#history && coversKey(this.#shape);
    this.#limits = limits;
  }

  /** Number of changes buffered since the last flush (ignored ones excluded). */
  get size(): number {
    return this.#size;
  }

  /** Buffers one change of a source transaction committed at `commitTimeIso` (read by history routes only). */
  add(change: Change, commitTimeIso: string): void {
    switch (change.kind) {
      case "insert":
        this.#ops.insert++;
        this.#size++;
        if (this.#keyless) this.#inserts().push(change.newTuple);
        else this.#addInsert(change.newTuple, commitTimeIso);
        return;
      case "update": {
        const old = change.keyTuple ?? change.oldTuple;
        this.#ops.update++;
        this.#size++;
        if (this.#keyless) {
          if (!old) {
            throw new Error(`${this.route.source}: UPDATE without old row on a keyless route`);
          }
          this.#segments.push({
            t: "keyless_update",
            old,
            row: change.newTuple,
            at: commitTimeIso,
          });
        } else {
          this.#addUpdate(old, change.newTuple, commitTimeIso);
        }
        return;
      }
      case "delete": {
        if (this.#append) return;
        const old = change.keyTuple ?? change.oldTuple;
        if (!old) throw new Error(`${this.route.source}: DELETE without old key`);
        this.#ops.delete++;
        this.#size++;
        if (this.#keyless) {
          this.#segments.push({ t: "keyless_delete", old, at: commitTimeIso });
        } else {
          const key = keyOf(old, this.#shape.keyIdx) as KeyValues;
          const text = keyText(key);
          if (this.#history) this.#historyFold().delete(text, key, commitTimeIso);
          else this.#cloneFold().delete(text, key);
        }
        return;
      }
      case "truncate":
        if (this.#append) return;
        this.#ops.truncate++;
        this.#size++;
        this.#segments.push({ t: "truncate", at: commitTimeIso });
        return;
    }
  }

  /**
   * Applies the buffered changes in `tx` (an open transaction) and empties the
   * buffer, or keeps it (`keep`) so that a flush whose transaction failed can
   * run again in another (a group commit that failed runs each source alone).
   */
  async flush(tx: Sql, keep = false): Promise<FlushResult> {
    const segments = this.#segments;
    const ops = keep ? { ...this.#ops } : this.#ops;
    if (!keep) {
      this.#segments = [];
      this.#size = 0;
      this.#ops = { insert: 0, update: 0, delete: 0, truncate: 0 };
    }
    const result: FlushResult = { rowsWritten: 0, anomalies: [], ops };
    const collect = (r: StepResult) => {
      result.rowsWritten += r.rows;
      for (const a of r.anomalies) result.anomalies.push({ ...a, route: this.route });
    };
    const shape = this.#shape;
    for (const seg of segments) {
      switch (seg.t) {
        case "clone": {
          collect({ rows: 0, anomalies: seg.fold.anomalies });
          const { general, updates, newKeys } = this.#splitPlain(seg.fold);
          // Deletes first: a unique value they free may be taken by an update or a new key.
          for (const chunk of this.#chunks(general, (e) => e.row, () => 1)) {
            collect(await applyCloneChunk(tx, shape, chunk));
          }
          for (const chunk of this.#chunks(updates, (e) => e.row, () => 1)) {
            collect(await applyCloneUpdates(tx, shape, chunk));
          }
          for (const chunk of this.#chunks(newKeys, (e) => e.row, () => 1)) {
            collect(await applyCloneNewKeys(tx, shape, chunk));
          }
          break;
        }
        case "history":
          collect({ rows: 0, anomalies: seg.fold.anomalies });
          for (
            const chunk of this.#chunks(
              seg.fold.entries.values(),
              (e) => e.versions.length ? e.versions[e.versions.length - 1].row : null,
              (e) => Math.max(1, e.versions.length),
            )
          ) {
            collect(await applyHistoryChunk(tx, shape, chunk));
          }
          break;
        case "inserts":
          for (const chunk of this.#chunks(seg.rows.values(), (r) => r, () => 1)) {
            collect(await insertRows(tx, shape, { rows: chunk, history: this.#history }));
          }
          break;
        case "keyless_update":
          collect(await (this.#history ? keylessHistoryUpdate : keylessUpdate)(tx, shape, seg));
          break;
        case "keyless_delete":
          collect(await (this.#history ? keylessHistoryDelete : keylessDelete)(tx, shape, seg));
          break;
        case "key_change":
          collect(
            await (this.#history ? applyHistoryKeyChange : applyCloneKeyChange)(tx, shape, seg),
          );
          break;
        case "truncate":
          collect(
            this.#history
              ? await applyHistoryTruncate(tx, shape, seg.at)
              : await applyCloneTruncate(tx, shape),
          );
          break;
      }
    }
    return result;
  }

  /**
   * Splits folded entries: keys first updated and present at the end, keys
   * first inserted and present at the end (each group takes a plain
   * statement, in key order when the key is one integer: the destination
   * then walks its index and heap pages in order), and the rest for the
   * general one.
   */
  #splitPlain(fold: CloneFold): {
    general: CloneEntry[];
    updates: CloneEntry[];
    newKeys: CloneEntry[];
  } {
    const general: CloneEntry[] = [];
    const updates: [KeyId, CloneEntry][] = [];
    const newKeys: [KeyId, CloneEntry][] = [];
    let numeric = true;
    for (const entry of fold.entries) {
      const e = entry[1];
      if (!this.#plain || e.row === null || e.first === "D") general.push(e);
      else {
        (e.first === "U" ? updates : newKeys).push(entry);
        numeric &&= typeof entry[0] === "number";
      }
    }
    return {
      general,
      updates: inKeyOrder(updates, numeric),
      newKeys: inKeyOrder(newKeys, numeric),
    };
  }

  #addInsert(row: Tuple, at: string): void {
    const key = keyOf(row, this.#shape.keyIdx) as KeyValues;
    const text = keyText(key);
    if (this.#history) this.#historyFold().insert(text, key, row, at);
    else this.#cloneFold().insert(text, key, row);
  }

  #addUpdate(old: Tuple | undefined, row: Tuple, at: string): void {
    const keyIdx = this.#shape.keyIdx;
    const newKey = keyOf(row, keyIdx);
    const oldKey = old ? keyOf(old, keyIdx) : newKey;
    let patched = false;
    for (let j = 0; j < keyIdx.length; j++) {
      // An unchanged TOASTed key value is not sent; the old key has it.
      if (newKey[j] === undefined) {
        newKey[j] = oldKey[j] ?? null;
        patched = true;
      }
      if (oldKey[j] === undefined) oldKey[j] = newKey[j];
    }
    if (patched) {
      row = row.slice();
      for (let j = 0; j < keyIdx.length; j++) row[keyIdx[j]] = newKey[j];
    }
    const newText = keyText(newKey);
    if (old && keyText(oldKey) !== newText) {
      this.#segments.push({
        t: "key_change",
        oldKey: oldKey as KeyValues,
        newKey: newKey as KeyValues,
        row,
        at,
      });
      return;
    }
    if (this.#history) this.#historyFold().update(newText, newKey as KeyValues, row, at);
    else this.#cloneFold().update(newText, newKey as KeyValues, row);
  }

  #cloneFold(): CloneFold {
    const last = this.#segments[this.#segments.length - 1];
    if (last?.t === "clone") return last.fold;
    const fold = new CloneFold(this.#shape.allIdx);
    this.#segments.push({ t: "clone", fold });
    return fold;
  }

  #historyFold(): HistoryFold {
    const last = this.#segments[this.#segments.length - 1];
    if (last?.t === "history") return last.fold;
    const fold = new HistoryFold(this.#shape.allIdx);
    this.#segments.push({ t: "history", fold });
    return fold;
  }

  #inserts(): Tuple[] {
    const last = this.#segments[this.#segments.length - 1];
    if (last?.t === "inserts") return last.rows;
    const rows: Tuple[] = [];
    this.#segments.push({ t: "inserts", rows });
    return rows;
  }

  /** Splits items into statement-sized chunks by count and approximate value bytes. */
  *#chunks<T>(
    items: Iterable<T>,
    rowOf: (item: T) => Tuple | null,
    weight: (item: T) => number,
  ): Generator<T[]> {
    const { rows: maxRows, bytes: maxBytes } = this.#limits;
    const idx = this.#shape.allIdx;
    let chunk: T[] = [];
    let rows = 0;
    let bytes = 0;
    for (const item of items) {
      const row = rowOf(item);
      let size = 16;
      if (row) {
        for (let j = 0; j < idx.length; j++) size += (row[idx[j]]?.length ?? 0) + 3;
      }
      const w = weight(item);
      if (chunk.length > 0 && (rows + w > maxRows || bytes + size * w > maxBytes)) {
        yield chunk;
        chunk = [];
        rows = 0;
        bytes = 0;
      }
      chunk.push(item);
      rows += w;
      bytes += size * w;
    }
    if (chunk.length > 0) yield chunk;
  }
}

/** The entries, sorted by key when every key is a number (see {@link keyText}). */
function inKeyOrder(entries: [KeyId, CloneEntry][], numeric: boolean): CloneEntry[] {
  if (numeric && entries.length > 1) entries.sort((a, b) => (a[0] as number) - (b[0] as number));
  return entries.map((e) => e[1]);
}
