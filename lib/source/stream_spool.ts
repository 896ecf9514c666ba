/**
 * Transactions the server streams while they are still running (pgoutput
 * `streaming on`, PostgreSQL 14+), kept on disk until their Stream Commit
 * (then replayed in order, as one transaction) or Stream Abort (then dropped).
 *
 * The server streams a transaction once its decoded changes outgrow
 * `logical_decoding_work_mem`, so by its commit most of it has already been
 * decoded, sent and spooled, and what is left to do is to apply it. kvsz's
 * memory does not grow with the transaction: the spool is a file of raw
 * pgoutput messages (`u32` length, then the message), written and read in
 * 1 MiB blocks (a larger message is written as it is and read into a buffer
 * of its own size).
 */

import { tmpdir } from "node:os";
import { int32At } from "../pg/frame_boundaries.ts";
import { releaseBuffer } from "./messages.ts";
import { existsSync } from "../fs.ts";

/** Data messages of a stream block, all with the (sub)transaction's xid after the tag. */
const SPOOLED_TAGS = new Set([
  0x49, // I insert
  0x55, // U update
  0x44, // D delete
  0x54, // T truncate
  0x52, // R relation
  0x59, // Y type
]);

const BLOCK = 1 << 20;

/**
 * Spool directories are named after their process, `kvsz-stream-<host>-<pid>-<random>`,
 * so that one left behind by a killed process can be recognised and removed.
 */
function spoolDirPrefix(): string {
  return `kvsz-stream-${Deno.hostname()}-${Deno.pid}-`;
}

/** Parent directories already swept by this process. */
const swept = new Set<string>();

/**
 * Removes the spool directories in `parentDir` (default: the system's
 * temporary directory) that processes of this host left when they were
 * killed: their pid no longer runs (`/proc`; without it nothing is removed).
 * Their transactions were never acknowledged, so the server streams them
 * again. Runs once per directory per process; returns what it removed and
 * how many bytes that freed.
 */
export function removeStaleSpools(parentDir?: string): { dirs: string[]; bytes: number } {
  const removed = { dirs: [] as string[], bytes: 0 };
  const parent = parentDir ?? tmpdir();
  if (swept.has(parent)) return removed;
  swept.add(parent);
  if (!existsSync("/proc/self")) return removed;
  const pattern = new RegExp(`^kvsz-stream-${escapeRegExp(Deno.hostname())}-(\\d+)-`);
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(parent)];
  } catch {
    return removed;
  }
  for (const e of entries) {
    const pid = e.isDirectory ? e.name.match(pattern)?.[1] : undefined;
    if (!pid || existsSync(`/proc/${pid}`)) continue;
    const path = `${parent}/${e.name}`;
    try {
      for (const f of Deno.readDirSync(path)) {
        if (f.isFile) removed.bytes += Deno.statSync(`${path}/${f.name}`).size;
      }
      Deno.removeSync(path, { recursive: true });
      removed.dirs.push(path);
    } catch { /* another process swept it, or not ours to remove */ }
  }
  return removed;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** True for a message of a stream block that belongs in the spool (the others are decoded at once). */
export function isSpooled(buf: Uint8Array, at: number): boolean {
  return SPOOLED_TAGS.has(buf[at]);
}

/** One streamed transaction's changes, in a file of its own. */
class TransactionSpool {
  readonly #file: Deno.FsFile;
  readonly #path: string;
  /** Bytes written to the file. */
  #flushed = 0;
  #block = new Uint8Array(BLOCK);
  #used = 0;
  /** Offset of the first message of each (sub)transaction: a subtransaction's abort cuts there. */
  #firstOffset = new Map<number, number>();
  /** Messages spooled. */
  messages = 0;

  constructor(dir: string, xid: number) {
    this.#path = `${dir}/${xid}.spool`;
    this.#file = Deno.openSync(this.#path, {
      read: true,
      write: true,
      create: true,
      truncate: true,
    });
  }

  get length(): number {
    return this.#flushed + this.#used;
  }

  /** Appends bytes `start` to `end` of `buf`, a message made by (sub)transaction `xid`. */
  append(buf: Uint8Array, start: number, end: number, xid: number): void {
    if (!this.#firstOffset.has(xid)) this.#firstOffset.set(xid, this.length);
    const size = end - start;
    this.messages++;
    if (this.#used + 4 + size > this.#block.byteLength) this.#flush();
    const b = this.#block, u = this.#used;
    b[u] = size >>> 24;
    b[u + 1] = (size >>> 16) & 0xff;
    b[u + 2] = (size >>> 8) & 0xff;
    b[u + 3] = size & 0xff;
    if (4 + size <= b.byteLength) {
      b.set(buf.subarray(start, end), u + 4);
      this.#used = u + 4 + size;
      return;
    }
    // Larger than a block: written from where it is, never copied.
    this.#used = 4;
    this.#flush();
    this.#write(buf.subarray(start, end));
  }

  /**
   * Drops what subtransaction `xid` and everything after it made: a rolled-back
   * savepoint undoes all changes since it began, which are the spool's tail.
   */
  abortSubtransaction(xid: number): void {
    const at = this.#firstOffset.get(xid);
    if (at === undefined) return;
    for (const [x, offset] of this.#firstOffset) if (offset >= at) this.#firstOffset.delete(x);
    if (at >= this.#flushed) {
      this.#used = at - this.#flushed;
    } else {
      this.#used = 0;
      this.#file.truncateSync(at);
      this.#flushed = at;
    }
  }

  /**
   * Calls `each` with every spooled message in order (bytes `start` to `end`
   * of `buf`; `buf` is not reused), awaiting the promises it returns.
   */
  async replay(
    each: (buf: Uint8Array, start: number, end: number) => void | Promise<void>,
  ): Promise<void> {
    this.#flush();
    this.#file.seekSync(0, Deno.SeekMode.Start);
    let buf = new Uint8Array(0), p = 0, filled = 0, left = this.#flushed;
    while (true) {
      while (p + 4 <= filled) {
        const size = int32At(buf, p);
        if (p + 4 + size > filled) break;
        const wait = each(buf, p + 4, p + 4 + size);
        if (wait) await wait;
        p += 4 + size;
      }
      if (left === 0) {
        if (p !== filled) throw new Error(`stream spool ${this.#path} is cut short`);
        if (buf.byteLength > BLOCK) releaseBuffer(buf);
        return;
      }
      // A fresh block (messages may keep views of the old one), sized for the next message.
      const next = new Uint8Array(Math.max(BLOCK, p + 4 <= filled ? 4 + int32At(buf, p) : 4));
      next.set(buf.subarray(p, filled));
      // A block larger than BLOCK held one message alone, now handled.
      if (buf.byteLength > BLOCK) releaseBuffer(buf);
      buf = next;
      filled -= p;
      p = 0;
      while (filled < buf.byteLength && left > 0) {
        const n = this.#file.readSync(
          buf.subarray(filled, filled + Math.min(left, buf.byteLength - filled)),
        );
        if (!n) throw new Error(`stream spool ${this.#path} ended early`);
        filled += n;
        left -= n;
      }
    }
  }

  /** Closes and deletes the file. */
  remove(): void {
    try {
      this.#file.close();
    } catch { /* already closed */ }
    try {
      Deno.removeSync(this.#path);
    } catch { /* already gone */ }
  }

  #flush(): void {
    this.#write(this.#block.subarray(0, this.#used));
    this.#used = 0;
  }

  #write(bytes: Uint8Array): void {
    let p = 0;
    while (p < bytes.byteLength) p += this.#file.writeSync(bytes.subarray(p));
    this.#flushed += bytes.byteLength;
  }
}

/** Every transaction being streamed on one replication connection, and the open stream block. */
export class StreamedTransactions {
  readonly #spools = new Map<number, TransactionSpool>();
  #dir: string | null = null;
  #current: TransactionSpool | null = null;

  constructor(
    /** Parent of the spool directory (default: the system's temporary directory). */
    private readonly parentDir?: string,
  ) {}

  /** A Stream Start: the block's messages belong to top-level transaction `xid`. */
  start(xid: number): void {
    let spool = this.#spools.get(xid);
    if (!spool) {
      this.#dir ??= Deno.makeTempDirSync({ dir: this.parentDir, prefix: spoolDirPrefix() });
      spool = new TransactionSpool(this.#dir, xid);
      this.#spools.set(xid, spool);
    }
    this.#current = spool;
  }

  /** A Stream Stop. */
  stop(): void {
    this.#current = null;
  }

  /** Spools the message in bytes `start` to `end` of `buf` (inside a stream block). */
  append(buf: Uint8Array, start: number, end: number): void {
    const spool = this.#current;
    if (!spool) throw new Error("pgoutput data message outside a stream block");
    spool.append(buf, start, end, int32At(buf, start + 1));
  }

  /** A Stream Abort: drops the whole transaction, or the subtransaction's part of it. */
  abort(xid: number, subXid: number): void {
    const spool = this.#spools.get(xid);
    if (!spool) return;
    if (subXid !== xid && subXid !== 0) {
      spool.abortSubtransaction(subXid);
      return;
    }
    spool.remove();
    this.#spools.delete(xid);
  }

  /**
   * A Stream Commit: replays transaction `xid`'s messages through `each`, then
   * deletes its spool. A transaction with nothing spooled replays nothing.
   */
  async commit(
    xid: number,
    each: (buf: Uint8Array, start: number, end: number) => void | Promise<void>,
  ): Promise<{ messages: number; bytes: number }> {
    const spool = this.#spools.get(xid);
    if (!spool) return { messages: 0, bytes: 0 };
    this.#spools.delete(xid);
    try {
      await spool.replay(each);
      return { messages: spool.messages, bytes: spool.length };
    } finally {
      spool.remove();
    }
  }

  /** Drops every spool and the directory (the server streams them again after a restart). */
  discard(): void {
    for (const spool of this.#spools.values()) spool.remove();
    this.#spools.clear();
    this.#current = null;
    if (this.#dir) {
      try {
        Deno.removeSync(this.#dir, { recursive: true });
      } catch { /* already gone */ }
      this.#dir = null;
    }
  }
}
