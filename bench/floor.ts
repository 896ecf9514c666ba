/**
 * The walsender floor of a catch-up: a logical slot of its own (pgoutput, with
 * its own publication on the same tables), created before the backlog is
 * loaded and drained afterwards by an in-process consumer that decodes with
 * kvsz's reader (`lib/source/reader.ts`) into a sink that does nothing but
 * acknowledge each commit's end LSN. No consumer reading one slot can catch up
 * faster than this: the source's walsender decodes the WAL on one core.
 */
import process from "node:process";
import { connect, type Sql as KvszSql } from "../lib/pg/connect.ts";
import { formatLsn, parseLsn } from "../lib/pg/lsn.ts";
import type { PgoutputMessage, StreamCommitMessage } from "../lib/source/messages.ts";
import { type ReaderSink, streamChanges } from "../lib/source/reader.ts";
import { originOptionSupported, protoVersionFor } from "../lib/source/replication_protocol.ts";
import { onCleanup } from "./cleanup.ts";
import { dropSlot, processSystemCpuSeconds, walsenderCpu } from "./slots.ts";
import type { Server } from "./servers.ts";
import { machineCpuSeconds, now, processCpuSeconds, sleep } from "./util.ts";

/** Slot, publication and application_name of the floor consumer. */
export const FLOOR_NAME = "bench_floor";

/** What one drain of the floor slot measured. */
export interface FloorResult {
  /** Connect → the slot's backlog end LSN reached, seconds. */
  seconds: number;
  /** INSERT/UPDATE/DELETE messages decoded. */
  changes: number;
  /** Transactions (Commit messages) decoded. */
  transactions: number;
  /** How the end was seen: the end LSN of the last commit, or a keepalive's sent position. */
  reachedBy: string;
  /** CPU seconds of the source's walsender process over its whole life (connect → end). */
  walsenderCpu: number | null;
  /** Of which in the kernel (system time: mostly one send() per message to a fast reader). */
  walsenderSystemCpu: number | null;
  /** Seconds the walsender process had lived when its CPU was read. */
  walsenderLifetime: number | null;
  /** CPU seconds of the bench process (the in-process reader and null sink) while draining. */
  consumerCpu: number;
  /** Busy CPU seconds of the whole machine while draining. */
  machineCpu: number;
}

/** What decoding the backlog inside the server (no network) measured. */
export interface DecodeOnlyResult {
  seconds: number;
  /** pgoutput messages produced (Begin, Relation, changes, Commit). */
  messages: number;
  /** CPU seconds of the backend that decoded. */
  backendCpu: number | null;
  backendSystemCpu: number | null;
}

/** A logical slot and publication that only the floor consumer reads. */
export class FloorSlot {
  #dropped = false;
  #unregister: () => void;

  private constructor(readonly source: Server, readonly db: string) {
    this.#unregister = onCleanup(`floor slot ${FLOOR_NAME}`, () => this.drop());
  }

  /** Creates the publication on `tables` and then the slot (pgoutput) in `db` on the source. */
  static async create(source: Server, db: string, tables: string[]): Promise<FloorSlot> {
    const sql = source.sql(db);
    const floor = new FloorSlot(source, db);
    await sql.unsafe(`DROP PUBLICATION IF EXISTS ${FLOOR_NAME}`);
    await dropSlot(source, FLOOR_NAME);
    // The publication first: pgoutput looks it up as of the WAL it decodes.
    await sql.unsafe(`CREATE PUBLICATION ${FLOOR_NAME} FOR TABLE ${tables.join(", ")}`);
    await sql.unsafe(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [FLOOR_NAME]);
    return floor;
  }

  /**
   * Streams the slot with kvsz's reader into a null sink until `endLsn` is
   * reached (a Commit ending at or after it, or a keepalive saying the
   * walsender has decoded past it), then stops. Timed from connect.
   */
  async drain(endLsn: string, timeoutMs = 600_000): Promise<FloorResult> {
    const end = parseLsn(endLsn);
    let reached!: () => void;
    const done = new Promise<void>((r) => (reached = r));
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    const sink = new NullSink(end, reached);
    const cpu0 = process.cpuUsage();
    const machine0 = machineCpuSeconds();
    const t0 = now();
    const replication: KvszSql = connect(this.source.url(this.db), {
      replication: true,
      params: { application_name: FLOOR_NAME },
    });
    const unregister = onCleanup(`floor consumer of ${FLOOR_NAME}`, async () => {
      stop();
      await replication.end({ timeout: 1 }).catch(() => {});
    });
    let streamError: unknown = null;
    const streaming = streamChanges(replication, sink, {
      slot: FLOOR_NAME,
      publication: FLOOR_NAME,
      startLsn: 0n, // the slot's confirmed_flush_lsn
      serverMajor: this.source.cluster.major,
      maxQueued: 20_000, // kvsz's default apply.queue_size
      stop: stopped,
    }).catch((e) => {
      streamError = e;
      reached();
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)));
    try {
      await Promise.race([done, timeout]);
      const seconds = (now() - t0) / 1000;
      const usage = process.cpuUsage(cpu0);
      const consumerCpu = (usage.user + usage.system) / 1e6;
      const machineCpu = machineCpuSeconds() - machine0;
      if (streamError) throw streamError;
      if (!sink.reached) {
        throw new Error(
          `floor consumer: ${FLOOR_NAME} did not reach ${endLsn} in ${timeoutMs / 1000} s ` +
            `(last commit end ${formatLsn(sink.safeLsn)}, ${sink.changes} changes)`,
        );
      }
      // The walsender is idle now (everything is sent); its CPU is that of the drain.
      const ws = await walsenderCpu(this.source, [FLOOR_NAME]);
      return {
        seconds,
        changes: sink.changes,
        transactions: sink.transactions,
        reachedBy: sink.reachedBy,
        walsenderCpu: ws?.cpu ?? null,
        walsenderSystemCpu: ws?.system ?? null,
        walsenderLifetime: ws?.lifetime ?? null,
        consumerCpu,
        machineCpu,
      };
    } finally {
      clearTimeout(timer);
      stop();
      await streaming;
      await replication.end({ timeout: 1 }).catch(() => {});
      unregister();
    }
  }

  /**
   * Decodes the backlog inside the server with the same plugin and options,
   * no network: `pg_logical_slot_peek_binary_changes` up to `endLsn` (the
   * slot does not advance). The backend's CPU is that of decoding alone.
   */
  async decodeOnly(endLsn: string): Promise<DecodeOnlyResult> {
    const sql = this.source.sql(this.db);
    const major = this.source.cluster.major;
    const [{ pid }] = await sql.unsafe(`SELECT pg_backend_pid() AS pid`);
    const cpu0 = processCpuSeconds(pid);
    const sys0 = processSystemCpuSeconds(pid);
    const t0 = now();
    const [{ n }] = await sql.unsafe(
      `SELECT count(*)::int AS n
         FROM pg_logical_slot_peek_binary_changes($1, $2::pg_lsn, NULL,
                'proto_version', $3, 'publication_names', $4${
        originOptionSupported(major) ? ", 'origin', 'none'" : ""
      })`,
      [FLOOR_NAME, endLsn, String(protoVersionFor(major)), FLOOR_NAME],
    );
    const seconds = (now() - t0) / 1000;
    const cpu = processCpuSeconds(pid);
    const sys = processSystemCpuSeconds(pid);
    return {
      seconds,
      messages: n,
      backendCpu: cpu === null || cpu0 === null ? null : cpu - cpu0,
      backendSystemCpu: sys === null || sys0 === null ? null : sys - sys0,
    };
  }

  /** Drops the slot (waiting for its walsender to go) and the publication. */
  async drop(): Promise<void> {
    if (this.#dropped) return;
    this.#dropped = true;
    this.#unregister();
    await dropSlot(this.source, FLOOR_NAME);
    await this.source.sql(this.db).unsafe(`DROP PUBLICATION IF EXISTS ${FLOOR_NAME}`);
    await sleep(0);
  }
}

/**
 * Discards every message; acknowledges each commit's end LSN; notices the end
 * LSN. A transaction streamed while it runs is discarded as it arrives.
 */
class NullSink implements ReaderSink {
  safeLsn = 0n;
  inTransaction = false;
  changes = 0;
  transactions = 0;
  reached = false;
  reachedBy = "";
  readonly failed: Promise<never> = new Promise<never>(() => {});

  constructor(readonly end: bigint, readonly onReached: () => void) {}

  handle(msg: PgoutputMessage): void {
    switch (msg.tag) {
      case "begin":
        this.inTransaction = true;
        break;
      case "insert":
      case "update":
      case "delete":
        this.changes++;
        break;
      case "commit":
        this.#committed(msg.endLsn);
        break;
    }
  }

  drained(): void {}

  settle(): Promise<void> {
    return Promise.resolve();
  }

  setWake(): void {}

  beginStreamed(): void {
    this.inTransaction = true;
  }

  resumeStreamed(): void {
    this.inTransaction = true;
  }

  pauseStreamed(): void {
    this.inTransaction = false;
  }

  abortStreamed(): boolean {
    return true;
  }

  commitStreamed(msg: StreamCommitMessage): void {
    this.#committed(msg.endLsn);
  }

  #committed(endLsn: bigint): void {
    this.inTransaction = false;
    this.transactions++;
    this.safeLsn = endLsn;
    if (endLsn >= this.end) this.#reach(`commit ending at ${formatLsn(endLsn)}`);
  }

  noteIdlePosition(walEnd: bigint): void {
    // A keepalive carries the walsender's sent position: everything decoded
    // before it was sent (and handled here) before it.
    if (!this.inTransaction && walEnd >= this.end) {
      this.#reach(
        `keepalive at ${formatLsn(walEnd)} after a commit ending at ${formatLsn(this.safeLsn)}`,
      );
    }
  }

  #reach(how: string): void {
    if (this.reached) return;
    this.reached = true;
    this.reachedBy = how;
    this.onReached();
  }
}
