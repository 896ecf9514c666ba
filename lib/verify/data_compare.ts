/**
 * Compares a table's rows, source and destination, without moving them: the
 * key space is cut into chunks of about `chunkRows` source rows, each chunk's
 * count and checksum is computed on both servers, and a chunk that differs is
 * narrowed: cut into sub-ranges by key, each checksummed again, down to
 * ranges of a few hundred rows, which are looked at row by row (keys and row
 * hashes) to name the keys. While kvsz
 * streams, a difference must survive the destination catching up with the
 * source, round after round, to be reported.
 */
import type { Sql } from "../pg/connect.ts";
import { mapBounded } from "../preflight/bounded.ts";
import {
  boundariesQuery,
  checksumQuery,
  columnHashesQuery,
  keyHashesQuery,
  type KeyRange,
  type RowSide,
  WHOLE_RANGE,
} from "./row_hash.ts";
import type { CatchUp } from "./catch_up.ts";

/** How a row differs. */
export type RowDifferenceKind = "missing" | "extra" | "different";

/** A row that differs, by key: missing at the destination, extra there, or with other values. */
export interface RowDifference {
  /** Key column → value (as text). */
  key: Record<string, string>;
  kind: RowDifferenceKind;
  /** For `different`: the columns whose values differ (for the first few rows only). */
  columns?: string[];
}

/** One side's client and how its rows are read. */
export interface DataSide {
  sql: Sql;
  side: RowSide;
}

/** Options of {@link compareTableData}. */
export interface DataCompareOptions {
  /** About this many source rows per chunk. */
  chunkRows: number;
  /** Chunks compared at once. */
  concurrency: number;
  /** Waits (until `deadline`) for the destination to pass the source's position; says whether kvsz streams it. */
  catchUp: (deadline: number) => Promise<CatchUp>;
  /** Milliseconds a difference is re-checked for, from the first re-check on. */
  waitMs: number;
  /** Differences kept with their keys (the count covers all). */
  maxKept: number;
}

/** What {@link compareTableData} found. */
export interface DataResult {
  equal: boolean;
  sourceRows: number;
  destinationRows: number;
  chunks: number;
  differingChunks: number;
  /** The rows that differ (at most `maxKept`), when the table has a key. */
  differences: RowDifference[];
  /** How many rows differ (keyed tables), else 0. */
  differenceCount: number;
  /** Rows read key by key (both sides, every round): what narrowing saves. */
  rowsCompared: number;
}

/** Re-check rounds at most, while kvsz streams. */
const MAX_ROUNDS = 10;

/** A differing range of at most this many rows (on either side) is compared row by row. */
const LEAF_ROWS = 256;
/** Sub-ranges a larger differing range is cut into. */
const SPLIT = 16;

/** Rows of `different` kind whose differing columns are named. */
const COLUMNS_NAMED = 20;

/** A difference found in one round, with its range, key text and both sides' row hashes. */
type Found = RowDifference & { range: KeyRange; keyText: string; seen: string };

interface Sums {
  rows: number;
  s1: string;
  s2: string;
}

/**
 * Compares the rows of `source` and `destination` (see the module comment).
 * A keyless table is compared as a whole, by count and checksum.
 */
export async function compareTableData(
  source: DataSide,
  destination: DataSide,
  opts: DataCompareOptions,
): Promise<DataResult> {
  const keyed = source.side.key.length > 0;
  const ranges = keyed ? await chunkRanges(source, opts.chunkRows) : [WHOLE_RANGE];
  const first = await mapBounded(
    ranges,
    opts.concurrency,
    (r) => chunkSums(source, destination, r),
  );
  const result: DataResult = {
    equal: true,
    sourceRows: first.reduce((n, c) => n + c.source.rows, 0),
    destinationRows: first.reduce((n, c) => n + c.destination.rows, 0),
    chunks: ranges.length,
    differingChunks: 0,
    differences: [],
    differenceCount: 0,
    rowsCompared: 0,
  };
  let differing = ranges.filter((_, i) => !sameSums(first[i].source, first[i].destination));
  if (differing.length === 0) return result;
  const deadline = Date.now() + opts.waitMs;
  if (!keyed) return await recheckWhole(source, destination, { ...opts, deadline }, result);
  let suspects: Map<string, Found> | null = null;
  /** The chunk each narrowed range belongs to. */
  const chunkOf = new Map<KeyRange, KeyRange>();
  for (let round = 1;; round++) {
    const { streaming } = await opts.catchUp(deadline);
    if (round === 1) {
      const narrowed = await mapBounded(differing, opts.concurrency, async (chunk) => {
        const leaves = await narrow({ source, destination }, chunk, opts);
        for (const leaf of leaves) chunkOf.set(leaf, chunk);
        return leaves;
      });
      differing = narrowed.flat();
    }
    const found = await mapBounded(differing, opts.concurrency, async (range) => {
      const rows = await rowDifferences(source, destination, range);
      result.rowsCompared += rows.read;
      return { range, rows: rows.differences };
    });
    differing = found.filter((f) => f.rows.size > 0).map((f) => f.range);
    const current = new Map<string, Found>();
    for (const f of found) {
      for (const [k, d] of f.rows) current.set(k, { ...d, range: f.range, keyText: k });
    }
    // A difference counts when every round saw it, the same on both sides (a row the
    // stream changes meanwhile looks different each time): the others came and went.
    const next: Map<string, Found> = suspects
      ? new Map([...current].filter(([k, d]) => suspects!.get(k)?.seen === d.seen))
      : current;
    const stable = suspects !== null && next.size === suspects.size;
    suspects = next;
    if (next.size === 0) return result;
    if (!streaming || stable || round >= MAX_ROUNDS || Date.now() >= deadline) break;
  }
  const all = [...suspects.values()];
  result.equal = false;
  result.differenceCount = all.length;
  result.differingChunks = new Set(all.map((d) => chunkOf.get(d.range) ?? d.range)).size;
  const kept = all.slice(0, opts.maxKept);
  await nameColumns(source, destination, kept.filter((d) => d.kind === "different"));
  result.differences = kept.map(({ range: _, keyText: __, seen: ___, ...d }) => d);
  return result;
}

/** A keyless table: re-checked whole until equal, kvsz not streaming, or the deadline. */
async function recheckWhole(
  source: DataSide,
  destination: DataSide,
  opts: DataCompareOptions & { deadline: number },
  result: DataResult,
): Promise<DataResult> {
  for (let round = 1;; round++) {
    const { streaming } = await opts.catchUp(opts.deadline);
    const sums = await chunkSums(source, destination, WHOLE_RANGE);
    result.sourceRows = sums.source.rows;
    result.destinationRows = sums.destination.rows;
    if (sameSums(sums.source, sums.destination)) return result;
    if (!streaming || round >= MAX_ROUNDS || Date.now() >= opts.deadline) break;
  }
  return { ...result, equal: false, differingChunks: 1 };
}

/** Chunks of about `chunkRows` source rows, covering the whole key space. */
async function chunkRanges(source: DataSide, chunkRows: number): Promise<KeyRange[]> {
  const rows = await readOnly(source.sql, boundariesQuery(source.side, chunkRows));
  const bounds = rows.map((r) => JSON.parse(String(r.key)) as string[]);
  const ranges: KeyRange[] = [];
  let after: string[] | null = null;
  for (const upTo of bounds) {
    ranges.push({ after, upTo });
    after = upTo;
  }
  ranges.push({ after, upTo: null });
  return ranges;
}

async function chunkSums(
  source: DataSide,
  destination: DataSide,
  range: KeyRange,
): Promise<{ source: Sums; destination: Sums }> {
  const read = async (d: DataSide): Promise<Sums> => {
    const [row] = await readOnly(d.sql, checksumQuery(d.side, range));
    return { rows: Number(row.rows), s1: String(row.s1), s2: String(row.s2) };
  };
  const [s, d] = await Promise.all([read(source), read(destination)]);
  return { source: s, destination: d };
}

function sameSums(a: Sums, b: Sums): boolean {
  return a.rows === b.rows && a.s1 === b.s1 && a.s2 === b.s2;
}

/**
 * The ranges of `range` whose rows differ, each of at most {@link LEAF_ROWS}
 * rows (or wider, when most of its sub-ranges differ: cutting further would
 * cost more than reading it); none when it is equal.
 */
async function narrow(
  { source, destination }: { source: DataSide; destination: DataSide },
  range: KeyRange,
  opts: { concurrency: number; sums?: { source: Sums; destination: Sums } },
): Promise<KeyRange[]> {
  const { concurrency } = opts;
  const sums = opts.sums ?? await chunkSums(source, destination, range);
  if (sameSums(sums.source, sums.destination)) return [];
  const rows = Math.max(sums.source.rows, sums.destination.rows);
  if (rows <= LEAF_ROWS) return [range];
  // Cut by the side that has the rows (a range may hold rows at the destination only).
  const by = sums.source.rows >= sums.destination.rows ? source : destination;
  const subs = await subRanges(by, range, Math.ceil(rows / SPLIT));
  if (subs.length <= 1) return [range];
  const sub = await mapBounded(subs, concurrency, (r) => chunkSums(source, destination, r));
  const differing = subs.flatMap((r, i) =>
    sameSums(sub[i].source, sub[i].destination) ? [] : [{ r, sums: sub[i] }]
  );
  if (differing.length > subs.length / 2) return [range];
  const leaves = await mapBounded(
    differing,
    concurrency,
    ({ r, sums }) => narrow({ source, destination }, r, { concurrency, sums }),
  );
  return leaves.flat();
}

/** `range` cut after every `step`-th row of `side` (the first and last keep its bounds). */
async function subRanges(side: DataSide, range: KeyRange, step: number): Promise<KeyRange[]> {
  const rows = await readOnly(side.sql, boundariesQuery(side.side, step, range));
  const ranges: KeyRange[] = [];
  let after = range.after;
  for (const r of rows) {
    const upTo = JSON.parse(String(r.key)) as string[];
    ranges.push({ after, upTo });
    after = upTo;
  }
  if (JSON.stringify(after) !== JSON.stringify(range.upTo)) {
    ranges.push({ after, upTo: range.upTo });
  }
  return ranges;
}

/** The rows of `range` that differ, by key text, and how many rows were read. */
async function rowDifferences(
  source: DataSide,
  destination: DataSide,
  range: KeyRange,
): Promise<{ differences: Map<string, RowDifference & { seen: string }>; read: number }> {
  const read = async (d: DataSide) =>
    new Map(
      (await readOnly(d.sql, keyHashesQuery(d.side, range))).map((r) => [
        String(r.key),
        String(r.h),
      ]),
    );
  const src = await read(source);
  const dst = await read(destination);
  const names = source.side.key.map((k) => k.name);
  const keyOf = (text: string) => {
    const values = JSON.parse(text) as string[];
    return Object.fromEntries(names.map((n, i) => [n, values[i]]));
  };
  const out = new Map<string, RowDifference & { seen: string }>();
  for (const [key, h] of src) {
    const other = dst.get(key);
    const seen = `${h}/${other ?? "-"}`;
    if (other === undefined) out.set(key, { key: keyOf(key), kind: "missing", seen });
    else if (other !== h) out.set(key, { key: keyOf(key), kind: "different", seen });
  }
  for (const [key, h] of dst) {
    if (!src.has(key)) out.set(key, { key: keyOf(key), kind: "extra", seen: `-/${h}` });
  }
  return { differences: out, read: src.size + dst.size };
}

/** Sets `columns` of the first {@link COLUMNS_NAMED} `different` rows. */
async function nameColumns(
  source: DataSide,
  destination: DataSide,
  rows: Found[],
): Promise<void> {
  const named = rows.slice(0, COLUMNS_NAMED);
  const byRange = new Map<KeyRange, Found[]>();
  for (const r of named) byRange.set(r.range, [...(byRange.get(r.range) ?? []), r]);
  for (const [range, diffs] of byRange) {
    const keys = diffs.map((d) => d.keyText);
    const read = async (d: DataSide) =>
      new Map(
        (await readOnly(d.sql, columnHashesQuery(d.side, range, keys))).map((r) => [
          String(r.key),
          JSON.parse(String(r.hs)) as (string | null)[],
        ]),
      );
    const [src, dst] = await Promise.all([read(source), read(destination)]);
    diffs.forEach((d, i) => {
      const a = src.get(keys[i]);
      const b = dst.get(keys[i]);
      if (!a || !b) return;
      d.columns = source.side.columns.filter((_, j) => a[j] !== b[j]);
    });
  }
}

/** Runs `query` in a REPEATABLE READ READ ONLY transaction of its own. */
async function readOnly(sql: Sql, query: string): Promise<Record<string, unknown>[]> {
  return await sql.begin(
    "isolation level repeatable read read only",
    async (tx) => [...await tx.unsafe(query)],
  ) as Record<string, unknown>[];
}
