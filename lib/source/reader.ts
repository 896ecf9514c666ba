/**
 * The reader of one source: runs START_REPLICATION on a replication
 * connection, decodes pgoutput, hands messages to the applier in order, and
 * sends standby status updates with the LSN the applier has made safe. When
 * the applier falls behind, it stops reading the socket (backpressure) while
 * status updates keep the connection alive.
 */
import type { Logger } from "@logtape/logtape";
import { connectedSocketOf, type Sql } from "../pg/connect.ts";
import { CopyBothTap, CopyDataFrames } from "./copy_both_tap.ts";
import { PgoutputDecoder } from "./pgoutput.ts";
import type { PgoutputMessage, StreamCommitMessage } from "./messages.ts";
import { isSpooled, removeStaleSpools, StreamedTransactions } from "./stream_spool.ts";
import {
  encodeStandbyStatus,
  originOptionSupported,
  parseCopyData,
  protoVersionFor,
  startReplicationCommand,
} from "./replication_protocol.ts";
import { StreamRestart } from "../errors.ts";
import { KvszError } from "../errors.ts";
import { overServerLimit, pgErrorFields } from "../pg/errors.ts";
import { everySecond } from "./ticker.ts";

/** Milliseconds a clean stop waits for the sink to commit and record its last position. */
const SETTLE_MS = 5000;

/** Resolves when `work` settles or after `ms`, whichever is first; never rejects. */
async function settled(work: Promise<void>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  await Promise.race([work.catch(() => {}), late]);
  clearTimeout(timer);
}

/** CopyData kind 'w' and the length of its header (kind, start, end, time). */
const XLOG_DATA = 0x77;
const XLOG_HEADER = 25;
/** Bytes of undecoded messages held before the socket is paused, whatever their count. */
const MAX_QUEUED_BYTES = 32 << 20;
/**
 * Bytes of socket reads queued before the tapped socket is paused: small, so
 * that decoding what piled up while the destination was busy does not keep
 * the destination's replies waiting long (one thread does both).
 */
const TAP_QUEUED_BYTES = 256 << 10;

/**
 * How a transaction that the server streams while it runs (protocol 2+,
 * `streamInProgress`) is handled, as PostgreSQL's worker.c names its
 * `TransApplyAction`. Decided once, at the transaction's first Stream Start
 * (`streamedApply` in {@link streamChanges}), and kept to its Stream Commit or
 * Abort:
 *
 * - `"apply-as-it-arrives"`: each block's changes go to the sink between
 *   {@link StreamedSink.resumeStreamed} and {@link StreamedSink.pauseStreamed}
 *   as they arrive, and its Stream Commit is {@link StreamedSink.commitStreamed}.
 *   One transaction at a time, not one the pipeline asked to spool
 *   (`spoolOnly`), and only from its first block.
 * - `"spool"`: its changes go to disk (stream_spool.ts) and are handed to the
 *   sink at its Stream Commit as one whole transaction, Begin to Commit, as
 *   if it had arrived then; its Stream Abort drops them.
 */
export type StreamedApply = "apply-as-it-arrives" | "spool";

/** The sink's side of the transaction it applies as it arrives (see {@link StreamedApply}). */
export interface StreamedSink {
  /** Its first block begins: its changes follow. */
  beginStreamed(xid: number): void;
  /** A later block begins: its changes follow. */
  resumeStreamed(): void;
  /** A block ends: other transactions may follow. */
  pauseStreamed(): void;
  /** It was rolled back at the source: false when the sink cannot undo it alone (the stream restarts). */
  abortStreamed(): boolean;
  /** It committed at the source. */
  commitStreamed(msg: StreamCommitMessage): void | Promise<void>;
}

/** What the reader feeds and asks. */
export interface ReaderSink extends StreamedSink {
  /** Handles one message (`bytes` long on the wire); a returned promise pauses reading until it settles. */
  handle(msg: PgoutputMessage, bytes: number): void | Promise<void>;
  /** Everything below this LSN is committed in the destination. */
  readonly safeLsn: bigint;
  /**
   * A keepalive says the server has sent everything up to `walEnd`; `urgent`:
   * it waits for the answer (as it does when it shuts down).
   */
  noteIdlePosition(walEnd: bigint, urgent: boolean): void;
  /** True between a transaction's Begin and Commit, or inside a block applied as it arrives (a clean stop waits for its end). */
  readonly inTransaction: boolean;
  /** Called when every received message is handled; may commit what is pending. */
  drained(): void;
  /**
   * A clean stop, at a transaction boundary: commits what is pending and
   * records the last idle position, so that the last status confirms all of
   * it (a restart then decodes none of that WAL again).
   */
  settle(): Promise<void>;
  /** Gives the sink the reader's wake-up, to call when {@link safeLsn} moved. */
  setWake(wake: () => void): void;
  /** Rejects when the sink fails on its own (e.g. a timed commit): streaming stops with that error. */
  readonly failed: Promise<never>;
}

/** Options for {@link streamChanges}. */
export interface ReaderOptions {
  slot: string;
  publication: string | readonly string[];
  startLsn: bigint;
  serverMajor: number;
  /** Max undecoded messages held before the socket is paused. */
  maxQueued: number;
  /** Seconds between standby status updates (at most 10). */
  statusIntervalSeconds?: number;
  /** Resolves when the reader should stop (clean shutdown). */
  stop: Promise<void>;
  /** Seconds a clean stop waits for the current transaction to end (default 30). */
  stopTimeoutSeconds?: number;
  /**
   * Seconds without a message from the server, while kvsz is waiting for one,
   * before the connection is given up as dead (a keepalive is asked for at
   * half); 0 never. Default 60, as PostgreSQL's `wal_receiver_timeout`.
   */
  receiveTimeoutSeconds?: number;
  /** Called with the source's current WAL end from each keepalive. */
  onWalEnd?: (walEnd: bigint) => void;
  /**
   * Called at each standby status update with the LSN confirmed to the
   * server and the highest WAL end the server has said (in keepalives and
   * data headers) by then: their difference is the lag in bytes.
   */
  onConfirmed?: (confirmed: bigint, walEnd: bigint) => void;
  /**
   * Have the server stream large transactions while they run (PostgreSQL 14+):
   * applied as they arrive or spooled, see {@link StreamedApply}.
   */
  streamInProgress?: boolean;
  /** Where spools go (default: the system's temporary directory). */
  spoolDir?: string;
  /** Where the replay of a streamed transaction is reported. */
  log?: Logger;
  /** Streamed transactions to spool even when they could be applied as they arrive. */
  spoolOnly?: ReadonlySet<number>;
}

/**
 * Streams until `stop` resolves (then returns) or the connection fails
 * (then throws). Messages are handed to `sink` strictly in order.
 */
export async function streamChanges(
  replication: Sql,
  sink: ReaderSink,
  opts: ReaderOptions,
): Promise<void> {
  const protoVersion = protoVersionFor(opts.serverMajor);
  const streaming = opts.streamInProgress && protoVersion >= 2 ? "on" : false;
  const command = startReplicationCommand(opts.slot, opts.startLsn, {
    protoVersion,
    publication: opts.publication,
    origin: originOptionSupported(opts.serverMajor) ? "none" : undefined,
    streaming,
  });
  const decoder = new PgoutputDecoder({ protoVersion, streaming });
  if (streaming) {
    const stale = removeStaleSpools(opts.spoolDir);
    if (stale.dirs.length > 0) {
      opts.log?.info(
        "removed {count} spool directory(ies) left by killed kvsz processes ({mb} MB): {dirs}",
        {
          count: stale.dirs.length,
          mb: (stale.bytes / 1048576).toFixed(1),
          dirs: stale.dirs.join(", "),
        },
      );
    }
  }
  const streamed = new StreamedTransactions(opts.spoolDir);
  /** The streamed transaction the sink applies as it arrives (at most one). */
  let applying: number | null = null;
  /** How the open stream block is handled; null outside one. */
  let block: StreamedApply | null = null;
  /**
   * How streamed transaction `xid` is handled, the one place that decides
   * it: at its first Stream Start (`first`), applied as it arrives when no
   * other one is and the pipeline did not ask to spool it; afterwards as
   * decided then.
   */
  const streamedApply = (xid: number, first = false): StreamedApply => {
    if (first && applying === null && !opts.spoolOnly?.has(xid)) applying = xid;
    return xid === applying ? "apply-as-it-arrives" : "spool";
  };
  // On plain TCP the frames are read off the socket (see copy_both_tap.ts);
  // otherwise (TLS) through the driver's stream, one message per event.
  const socket = await connectedSocketOf(replication);
  const tap = CopyBothTap.fits(socket) ? new CopyBothTap(socket, TAP_QUEUED_BYTES) : null;
  // deno-lint-ignore no-explicit-any
  let stream: any;
  try {
    stream = await replication.unsafe(command).writable();
  } catch (e) {
    tap?.handBack();
    throw e;
  }

  let queue: Uint8Array[] = [];
  let failure: unknown = null;
  let ended = false;
  let wake: (() => void) | null = null;
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  let paused = false;
  let queuedBytes = 0;
  /** When the last bytes arrived, and since when the loop has been waiting for more (null: busy). */
  let lastReceived = performance.now();
  let waitingSince: number | null = null;
  if (tap) {
    tap.onChunk = () => {
      lastReceived = performance.now();
      notify();
    };
    tap.onError = (e) => {
      failure ??= e;
      notify();
    };
  }
  stream.on("data", (chunk: Uint8Array) => {
    lastReceived = performance.now();
    queue.push(chunk);
    queuedBytes += chunk.byteLength;
    if (!paused && (queue.length >= opts.maxQueued || queuedBytes >= MAX_QUEUED_BYTES)) {
      paused = true;
      stream.pause();
    }
    notify();
  });
  stream.on("error", (e: unknown) => {
    failure ??= e;
    notify();
  });
  stream.on("close", () => {
    ended = true;
    notify();
  });
  sink.setWake(notify);
  sink.failed.catch((e) => {
    failure = e;
    notify();
  });
  let stopping = false;
  let mustStop = false;
  let stopDeadline: ReturnType<typeof setTimeout> | undefined;
  opts.stop.then(() => {
    stopping = true;
    notify();
    // A clean stop waits for the current transaction's Commit, but not forever:
    // past the deadline the open transaction is rolled back (it streams again).
    stopDeadline = setTimeout(() => {
      mustStop = true;
      notify();
    }, (opts.stopTimeoutSeconds ?? 30) * 1000);
  });

  let lastSent = -1n;
  let statusAt = performance.now();
  /** The server's WAL end: from keepalives, and (as a number, cheap per message) from data headers. */
  let walEnd = 0n;
  let dataWalEnd = 0;
  const sendStatus = (force: boolean) => {
    const lsn = sink.safeLsn;
    if (!force && lsn === lastSent) return;
    lastSent = lsn;
    if (ended) return;
    stream.write(encodeStandbyStatus(lsn));
    statusAt = performance.now();
    if (BigInt(dataWalEnd) > walEnd) walEnd = BigInt(dataWalEnd);
    opts.onConfirmed?.(lsn, walEnd);
  };
  const statusEveryMs = Math.min(opts.statusIntervalSeconds ?? 10, 10) * 1000;
  const receiveTimeout = (opts.receiveTimeoutSeconds ?? 60) * 1000;
  let keepaliveAsked = false;
  /** Silence counts only while the loop waits for data: a busy loop is not reading. */
  const checkSilence = () => {
    if (waitingSince === null || ended) return;
    const silent = performance.now() - Math.max(lastReceived, waitingSince);
    if (silent < receiveTimeout / 2) {
      keepaliveAsked = false;
    } else if (silent < receiveTimeout) {
      if (!keepaliveAsked) {
        const lsn = sink.safeLsn;
        stream.write(encodeStandbyStatus(lsn, true));
      }
      keepaliveAsked = true;
    } else {
      failure ??= new ReceiveTimeout(receiveTimeout / 1000);
      notify();
    }
  };
  // Checked with every other source's, once a second (ticker.ts). A status goes out
  // every statusEveryMs while kvsz is not reading (the server's requests for one wait
  // unread) or has a new position to confirm; a reader waiting idle answers the
  // server's requests (wal_sender_timeout / 2) and is silent otherwise: a thousand
  // idle tenants cost a few writes a second, not a hundred.
  const stopTicking = everySecond(() => {
    const due = performance.now() - statusAt >= statusEveryMs;
    if (due && (waitingSince === null || lastSent !== sink.safeLsn)) sendStatus(true);
    if (receiveTimeout > 0) checkSilence();
  });

  /** True once the loop must end (a clean stop outside a transaction, or its deadline). */
  const mustEnd = () => (stopping && !sink.inTransaction) || mustStop;
  /** Handles one CopyData body (bytes `start` to `end` of `buf`). */
  const onCopyData = (buf: Uint8Array, start: number, end: number): void | Promise<void> => {
    let msg;
    if (buf[start] === XLOG_DATA && end - start > XLOG_HEADER) {
      // The hot path: of the header, only the server's WAL end (bytes 9 to 16) is read.
      dataWalEnd = readUint32(buf, start + 9) * 4294967296 + readUint32(buf, start + 13);
      const at = start + XLOG_HEADER;
      if (block === "spool" && isSpooled(buf, at)) {
        return streamed.append(buf, at, end);
      }
      msg = decoder.decodeAt(buf, at, end);
    } else {
      const frame = parseCopyData(buf.subarray(start, end));
      if (frame.kind === "keepalive") {
        if (frame.walEnd > walEnd) walEnd = frame.walEnd;
        opts.onWalEnd?.(frame.walEnd);
        sink.noteIdlePosition(frame.walEnd, frame.replyRequested);
        if (frame.replyRequested) sendStatus(true);
        return;
      }
      msg = decoder.decode(frame.payload);
    }
    switch (msg.tag) {
      case "stream_start":
        block = streamedApply(msg.xid, msg.first);
        if (block === "spool") return streamed.start(msg.xid);
        return msg.first ? sink.beginStreamed(msg.xid) : sink.resumeStreamed();
      case "stream_stop": {
        const ended = block;
        block = null;
        return ended === "apply-as-it-arrives" ? sink.pauseStreamed() : streamed.stop();
      }
      case "stream_abort":
        if (streamedApply(msg.xid) === "spool") return streamed.abort(msg.xid, msg.subXid);
        if (msg.subXid === msg.xid && sink.abortStreamed()) {
          applying = null;
          return;
        }
        throw new StreamRestart(
          msg.xid,
          msg.subXid === msg.xid
            ? "it was rolled back after transactions committed meanwhile were written with it"
            : "a savepoint of it was rolled back after its changes were written",
        );
      case "stream_commit":
        if (streamedApply(msg.xid) === "spool") return applyStreamed(msg);
        applying = null;
        return sink.commitStreamed(msg);
    }
    return sink.handle(msg, end - start);
  };
  /** Hands a streamed transaction to the sink as one transaction, as if it had just arrived whole. */
  const applyStreamed = async (commit: StreamCommitMessage): Promise<void> => {
    await sink.handle({
      tag: "begin",
      finalLsn: commit.commitLsn,
      commitTime: commit.commitTime,
      xid: commit.xid,
    }, 0);
    const replayed = new PgoutputDecoder({ protoVersion, streaming });
    replayed.enterStreamBlock(commit.xid);
    const started = performance.now();
    const spooled = await streamed.commit(commit.xid, (b, s, e) => {
      if (failure) throw failure;
      return sink.handle(replayed.decodeAt(b, s, e), e - s);
    });
    opts.log?.info(
      "transaction {xid} streamed while it ran: {messages} message(s), {mb} MB spooled, replayed in {seconds} s",
      {
        xid: commit.xid,
        messages: spooled.messages,
        mb: (spooled.bytes / 1048576).toFixed(1),
        seconds: ((performance.now() - started) / 1000).toFixed(2),
      },
    );
    return sink.handle({
      tag: "commit",
      flags: commit.flags,
      commitLsn: commit.commitLsn,
      endLsn: commit.endLsn,
      commitTime: commit.commitTime,
    }, 0);
  };
  /** After each message: stop on a failure or a due stop (what is left streams again after a restart). */
  const check = () => {
    if (failure) throw failure;
    if (mustEnd()) frames.halt();
  };
  const frames = new CopyDataFrames();

  try {
    while (true) {
      if (failure) throw failure;
      if (mustEnd()) break;
      const chunks = tap ? tap.take() : [];
      if (queue.length === 0 && chunks.length === 0) {
        if (ended) throw new Error("replication stream ended by the server");
        if (paused) {
          paused = false;
          stream.resume();
        }
        // Nothing more to read right now: commit instead of waiting for the timer.
        sink.drained();
        if (lastSent !== sink.safeLsn) sendStatus(false);
        if (queue.length > 0 || failure || stopping || tap?.queued) continue;
        waitingSince = performance.now();
        await new Promise<void>((resolve) => (wake = resolve));
        waitingSince = null;
        continue;
      }
      for (let c = 0; c < chunks.length && !frames.halted; c++) {
        await frames.each(chunks[c], onCopyData, check);
      }
      const batch = queue;
      queue = [];
      queuedBytes = 0;
      for (let i = 0; i < batch.length && !frames.halted; i++) {
        const wait = onCopyData(batch[i], 0, batch[i].byteLength);
        if (wait) await wait;
        check();
      }
      if (frames.halted) break;
      if (lastSent !== sink.safeLsn) sendStatus(false);
    }
  } catch (e) {
    throw cannotSend(e) ?? e;
  } finally {
    stopTicking();
    clearTimeout(stopDeadline);
    const clean = !ended && !failure;
    if (clean) {
      try {
        await settled(sink.settle(), SETTLE_MS);
        sendStatus(true);
        // CopyDone ends the stream as the protocol says; destroy() sends CopyFail, which
        // the walsender logs as FATAL "invalid standby message type" on every clean stop.
        stream.end();
      } catch { /* connection already gone */ }
    }
    tap?.discard();
    streamed.discard();
    if (!clean) stream.destroy?.();
  }
}

/**
 * The walsender's error when it cannot build the change it decodes (a
 * memory request or a string over 1 GB), said as what it is; else null.
 */
function cannotSend(e: unknown): Error | null {
  if (!overServerLimit(e)) return null;
  const { message, where } = pgErrorFields(e);
  const text = String(message);
  const lsn = /associated LSN ([0-9A-F]+\/[0-9A-F]+)/.exec(String(where ?? ""))?.[1];
  return new Error(
    `the source cannot send the change${lsn ? ` at ${lsn}` : ""}: ${text}. pgoutput sends every ` +
      `value as text, and PostgreSQL builds no text over 1 GB: a bytea over 512 MiB (sent in hex), ` +
      `or a row whose values add up to more, cannot leave the source, and nothing after it in the ` +
      `slot can be read. Skip its transaction (pg_replication_slot_advance on the source) and copy ` +
      `its table again (take it out of the config, start, put it back), or drop the slot to copy ` +
      `everything again`,
  );
}

/** The source sent nothing for the receive timeout: the connection is taken for dead. */
export class ReceiveTimeout extends KvszError {
  constructor(readonly seconds: number) {
    super(
      `no message from the source for ${seconds} s (timeouts.replication_receive_seconds): ` +
        `the connection is dead or the server stopped sending; reconnecting`,
    );
  }
}

/** The big-endian unsigned 32-bit integer at `at`. */
function readUint32(buf: Uint8Array, at: number): number {
  return ((buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3]) >>> 0;
}
