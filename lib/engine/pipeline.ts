/**
 * The whole life of one source (one database URL and sid): bring its
 * publication in line, create its slot (copying every table in the slot's
 * snapshot) or resume it (copying tables added since), then stream into the
 * applier until asked to stop. Failures are retried with capped exponential
 * backoff, resuming from the progress stored in the destination. Its
 * destination connections are the process's shared ones (destination.ts).
 */
import {
  type Config,
  type DatabaseMapping,
  type SourceUrl,
  type TableMapping,
  targetKey,
  targetSchemaOf,
} from "../config/types.ts";
import { connect, serverMajor, type Sql } from "../pg/connect.ts";
import { kvszObjectName, qualify } from "../pg/identifiers.ts";
import { formatLsn, parseLsn } from "../pg/lsn.ts";
import { OneByOneRestart } from "../apply/one_by_one_restart.ts";
import { TableStopped } from "../apply/large_change.ts";
import { log } from "../log.ts";
import type { PipelineEvents, SyncProgress } from "./events.ts";
import { Applier } from "../apply/applier.ts";
import { createReplicationOrigin } from "../apply/writer_pool.ts";
import { DeadSession } from "../apply/session_watchdog.ts";
import { destinationParams, type SharedDestination } from "./destination.ts";
import type { CatalogReads } from "./catalog_reads.ts";
import { type DriftReport, RouteTable } from "../apply/routes.ts";
import type { TargetTable } from "../apply/types.ts";
import {
  markTablesRemoved,
  readProgress,
  readSyncedTables,
  resetProgress,
  type SyncedTable,
  writeColumnState,
} from "../apply/progress.ts";
import { compareColumns, dated, describeDrift, stopsTable } from "../apply/drift.ts";
import { readSourceTable } from "../source/catalog.ts";
import { partitionsPublicationName, syncPublication } from "../source/publication.ts";
import {
  createSlotWithSnapshot,
  dropSlot,
  readSlot,
  readSlotLag,
  readWalEnd,
  setSlotFailover,
  type SlotInfo,
} from "../source/slot.ts";
import { recopyReason } from "../source/slot_trust.ts";
import { mappingLookup, type ResolvedTable, resolveTables } from "../source/tables.ts";
import { checkTransforms } from "./transform_check.ts";
import { type CopyPlan, copyTables, planCopy, type SyncJob } from "./initial_sync.ts";
import type { CopyTurn } from "./copy_slots.ts";
import { streamChanges } from "../source/reader.ts";
import { closeAtOnce, watchSourceShutdown } from "../source/shutdown_watch.ts";
import { serverProbe } from "../source/server_probe.ts";
import { type StartTurn, startTurn } from "../source/start_turns.ts";
import { describeError } from "../pg/describe.ts";
import { StreamRestart } from "../errors.ts";
import { NeedsPersonError } from "../errors.ts";
import { recoveryOf, RetrySchedule, sayFailure } from "./recovery.ts";
import { type Claim, SourceOwner } from "./source_owner.ts";
import { databaseListed } from "../source/databases.ts";
import { refuseReversedSource } from "../upgrade/reverse.ts";

/** Seconds the source's normal connection stays open unused once the source streams. */
const SOURCE_IDLE_SECONDS = 10;

/** Progress of a copy nobody displays. */
const QUIET_PROGRESS: SyncProgress = { start() {}, update() {}, finish() {} };

/** One source's pipeline. */
export class SourcePipeline {
  readonly name: string;
  readonly #log;
  #stopRequested: () => void = () => {};
  readonly #stop: Promise<void>;
  /** Aborted by {@link stop}: a wait for a copy turn ends. */
  readonly #stopSignal = new AbortController();
  #stopping = false;
  /** Streamed transactions to spool rather than apply as they arrive (see StreamRestart). */
  readonly #spoolOnly = new Set<number>();
  /** Source transactions up to this LSN are applied one change at a time (see OneByOneRestart). */
  #oneByOneUntil = 0n;
  /** True right after a StreamRestart or a takeover: the slot may still be held by the old walsender. */
  #restarting = false;
  /** Backend pid of the walsender of the last attempt. */
  #walsenderPid: number | null = null;
  /** The waits between failed attempts, and which failures are said. */
  readonly #retries = new RetrySchedule();
  /** True once the attempt streams. */
  #streaming = false;
  /** Failed attempts in a row that had reached streaming. */
  #streamFailures = 0;
  /** Tables with column drift or stopped for it (`schema.name`): a reload looks at them again. */
  readonly #drifted = new Set<string>();
  /**
   * Relations (`schema.name`) stopped until kvsz restarts: a change of theirs
   * cannot be written (see TableStopped). They are left out as if taken out
   * of the config, so the next start copies them again.
   */
  readonly #stopped = new Set<string>();
  /** The source's destination lock and each attempt's claim (source_owner.ts). */
  readonly #owner: SourceOwner;
  /** The running attempt's claim (its fence token; its signal stops its copy when lost). */
  #claim: Claim | null = null;

  readonly db: DatabaseMapping;
  readonly source: SourceUrl;
  /** The destination connections every source shares. */
  readonly destination: SharedDestination;

  constructor(
    readonly config: Config,
    /** The source (its database entry and URL entry), and the shared destination. */
    { db, source, destination }: {
      db: DatabaseMapping;
      source: SourceUrl;
      destination: SharedDestination;
    },
    readonly events: PipelineEvents = {},
  ) {
    this.db = db;
    this.source = source;
    this.destination = destination;
    this.name = kvszObjectName(db.database, source.sid);
    this.#log = log("source").with({ database: db.database, sid: source.sid });
    this.#stop = new Promise((resolve) => (this.#stopRequested = resolve));
    const key = { database: db.database, sid: source.sid, name: this.name };
    this.#owner = new SourceOwner(destination, key, { log: this.#log, events });
  }

  /** True when a table has column drift or is stopped for it: a config reload restarts the source. */
  get hasColumnDrift(): boolean {
    return this.#drifted.size > 0;
  }

  /** Asks the pipeline to finish its current transaction, commit, acknowledge and return. */
  stop(): void {
    this.#stopping = true;
    this.#stopRequested();
    this.#stopSignal.abort(new Error("stopping"));
  }

  /**
   * Runs until {@link stop}. After a failure the error's recovery decides
   * (see `recovery.ts`): reconnect at once with what it changed, back off
   * (1 s doubling to 30 s), or, for a problem that needs a person, say it
   * once and retry slowly. The source's destination lock is held throughout.
   */
  async run(): Promise<void> {
    try {
      await this.#attempts();
    } finally {
      this.#owner.release();
    }
  }

  async #attempts(): Promise<void> {
    while (!this.#stopping) {
      const started = performance.now();
      try {
        await this.runOnce();
        return;
      } catch (e) {
        this.events.onConnected?.(false);
        if (this.#stopping) return;
        const recovery = recoveryOf(e);
        if (recovery === "reconnect" && this.#reconnectsFor(e)) continue;
        const error = describeError(e);
        const kind = recovery === "needs-person" ? recovery : "backoff";
        const step = this.#retries.next(kind, error, performance.now() - started);
        this.events.onFailure?.(error);
        if (await this.#databaseGone()) {
          // Discovery stops this source at its next listing, and says so once.
          this.#log.debug("{error}; its database is gone, retrying in {seconds} s", {
            error,
            seconds: step.delayMs / 1000,
          });
        } else sayFailure(this.#log, error, step);
        this.#streamFailures = this.#streaming ? this.#streamFailures + 1 : 0;
        await Promise.race([new Promise((r) => setTimeout(r, step.delayMs)), this.#stop]);
      }
    }
  }

  /** A destination commit of this source: after failed attempts, it works again. */
  #committed(): void {
    const failures = this.#retries.failures;
    if (failures === 0) return;
    this.#retries.reset();
    this.#streamFailures = 0;
    this.#log.info("applying again after {failures} failed attempt(s)", { failures });
  }

  /** True when this source was discovered and its server no longer lists its database. */
  async #databaseGone(): Promise<boolean> {
    const found = this.source.discovered;
    if (!found || this.#stopping) return false;
    return await databaseListed(found.serverUrl, found.name, { connectTimeout: 5 }) === false;
  }

  /**
   * Takes in what a `reconnect` error changes; false when it would change
   * nothing (the same table stopped again, the same restart), which is then
   * backed off as a failure.
   */
  #reconnectsFor(e: unknown): boolean {
    if (e instanceof TableStopped && !this.#stopped.has(e.relation)) {
      this.#stopped.add(e.relation);
      this.#log.error("{message}", { message: e.message });
    } else if (e instanceof StreamRestart) {
      this.#spoolOnly.add(e.xid);
      this.#log.info("{message}", { message: e.message });
    } else if (e instanceof OneByOneRestart && this.#widens(e)) {
      if (e.untilLsn > this.#oneByOneUntil) this.#oneByOneUntil = e.untilLsn;
      if (e.streamedXid !== null) this.#spoolOnly.add(e.streamedXid);
      this.#log.warn("{message}", { message: e.message });
      this.events.onOneByOne?.(e.table);
    } else return false;
    this.#restarting = true;
    return true;
  }

  /** True when `e` applies more one change at a time, or spools one more transaction. */
  #widens(e: OneByOneRestart): boolean {
    return e.untilLsn > this.#oneByOneUntil ||
      (e.streamedXid !== null && !this.#spoolOnly.has(e.streamedXid));
  }

  /**
   * One attempt: hold the source's lock and claim it, prepare, sync what
   * needs it, stream until stopped or failed.
   */
  async runOnce(): Promise<void> {
    const cfg = this.config;
    const claim = await this.#owner.claim(this.#stopSignal.signal);
    this.#claim = claim;
    if (claim.tookOver) this.#restarting = true; // the previous holder's walsender may linger
    const owned = { database: this.db.database, sid: this.source.sid, ownerToken: claim.token };
    const dest = this.destination.catalog;
    this.#streaming = false;
    /** This source's turn to prepare among its server's (start_turns.ts). */
    let preparing: StartTurn | null = null;
    // Used to prepare; closed once unused, so that a streaming source holds only its
    // replication connection at the source (the shutdown watch asks through its server's).
    const src = connect(this.source.url, { idleTimeout: SOURCE_IDLE_SECONDS });
    const replication = connect(this.source.url, { replication: true });
    // Lost, the lock stops the attempt: its stream ends, what it holds uncommitted rolls back.
    claim.signal.addEventListener("abort", () => closeAtOnce(replication));
    let applier: Applier | null = null;
    try {
      await refuseReversedSource(src, dest, { ...owned, url: this.source.url });
      preparing = await startTurn(this.source.url, this.#stopSignal.signal);
      // The destination's side (kvsz schema, target tables, the origin tagging the
      // source's writes) is read while the source's is prepared; the replication
      // connection opens meanwhile (each costs a round of authentication).
      const catalog = this.destination.catalogReads;
      const destReady = (async () => {
        await catalog.ensureKvszSchema();
        return await readTargets(catalog, cfg.destination.schema, this.db.tables);
      })();
      destReady.catch(() => {}); // awaited below, after the source's errors
      const origin = createReplicationOrigin(dest, this.name);
      // The walsender's pid: should this connection die silently, the next attempt ends it.
      const walsender = replication.unsafe("SELECT pg_backend_pid() AS pid")
        .then((rows) => Number(rows[0].pid), () => null); // fails again where it is used
      const [major] = await Promise.all([serverMajor(src), checkWalLevel(src)]);
      if (this.source.failover && major < 17) {
        throw new NeedsPersonError(
          `failover: true needs a PostgreSQL 17 or later source (this one is ${major}): ` +
            `remove failover from the source's entry, or upgrade the source`,
        );
      }
      const tables = (await resolveTables(src, this.db.tables, major)).filter((t) =>
        !t.published.some((r) => this.#stopped.has(`${r.schema}.${r.name}`))
      );
      const [publications, slotBefore] = await Promise.all([
        this.#syncPublications(src, tables, major),
        readSlot(src, this.name, major),
      ]);
      const targets = await destReady;
      await checkTransforms(src, tables, targets, {
        database: this.db.database,
        sid: this.source.sid,
      });
      let slot = slotBefore;
      if (slot?.active && slot.activePid !== null && slot.activePid === this.#walsenderPid) {
        await this.#endOldWalsender(src, slot.activePid);
      }
      this.#walsenderPid = await walsender;
      for (let i = 0; slot?.active && this.#restarting && i < 50; i++) {
        await new Promise((r) => setTimeout(r, 100)); // our previous walsender is exiting
        slot = await readSlot(src, this.name, major);
      }
      this.#restarting = false;
      if (slot?.active) {
        throw new NeedsPersonError(
          `replication slot ${this.name} is in use by process ${slot.activePid}; ` +
            `another kvsz (or client) is streaming this source: stop it first`,
        );
      }
      if (slot?.walStatus === "lost") {
        throw new NeedsPersonError(
          `replication slot ${this.name} was invalidated (wal_status=lost): the source removed WAL it still needed. ` +
            `Re-sync: drop the slot (SELECT pg_drop_replication_slot('${this.name}') on the source, or kvsz drop) ` +
            `and restart kvsz; consider raising max_slot_wal_keep_size`,
        );
      }
      await markTablesRemoved(
        dest,
        { database: this.db.database, sid: this.source.sid },
        tables.map((t) => t.mapping.source),
      );
      const [synced, progress, walEnd] = await Promise.all([
        readSyncedTables(dest, this.db.database, this.source.sid),
        readProgress(dest, this.db.database, this.source.sid),
        readWalEnd(src),
      ]);
      const storedLsn = progress?.endLsn ?? null;
      const reason = recopyReason({ name: this.name, slot, storedLsn, walEnd });
      if (reason) {
        const action = "not streaming from it: copying every table again from a new slot";
        this.#log.warn("{reason}; {action}", { reason, action });
        if (slot) await dropSlot(replication, this.name);
        slot = null;
      } else if (slot) {
        await this.#alignFailover(replication, slot, major);
      }
      // Tables stopped for column drift are copied again only once it is fixed.
      const stopped = await this.#recheckColumns(src, dest, { tables, targets, synced });
      const copied = (t: ResolvedTable) => !stopped.has(t.mapping.source);
      const job = (t: ResolvedTable) => ({
        table: t,
        target: targets.get(targetKey(t.mapping))!,
        resync: synced.has(t.mapping.source),
        exclusive: this.#exclusive(targetKey(t.mapping)),
      });
      let startLsn: bigint;
      /** True when a copy (or a new slot's progress reset) changed the records read above. */
      let recordsChanged = true;
      if (!slot) {
        // New slot: every table is copied in the snapshot the slot exported, made once
        // the copy's first turn is this source's (see CopySlots.start).
        const plan = await this.#planCopy(tables.filter(copied).map(job), major, src);
        preparing.release(); // the copy waits for its copy turn in line
        const created = await this.#withCopyTurn(async (turn) => {
          const created = await createSlotWithSnapshot(replication, this.name, {
            major,
            failover: this.source.failover,
          });
          this.#log.info("created slot {name} at {lsn}", {
            name: this.name,
            lsn: formatLsn(created.consistentPoint),
          });
          await this.#copy(plan, { snapshot: created, turn });
          return created;
        });
        await resetProgress(dest, owned, formatLsn(created.consistentPoint));
        startLsn = created.consistentPoint;
      } else {
        // Existing slot: copy only the tables that are new (or came back) to the config.
        const jobs = tables
          .filter((t) => (synced.get(t.mapping.source)?.lsn ?? 0n) === 0n && copied(t))
          .map(job);
        preparing.release(); // a copy waits for its turn in line
        if (jobs.length > 0) await this.#copyWithTemporarySlot(jobs, major, src);
        else recordsChanged = false;
        startLsn = storedLsn ?? slot.confirmedFlushLsn ?? 0n;
      }
      const [syncedNow, progressNow] = recordsChanged
        ? await Promise.all([
          readSyncedTables(dest, this.db.database, this.source.sid),
          readProgress(dest, this.db.database, this.source.sid),
        ])
        : [synced, progress];
      const onDrift = (report: DriftReport) => {
        if (report.drift.length > 0 || report.stopped) this.#drifted.add(report.table);
        else this.#drifted.delete(report.table);
        this.events.onColumnDrift?.(report);
      };
      for (const t of tables) {
        const r = syncedNow.get(t.mapping.source);
        onDrift({
          table: `${t.mapping.sourceSchema}.${t.mapping.sourceName}`,
          drift: r?.drift ?? [],
          stopped: (r?.stoppedLsn ?? null) !== null,
        });
      }
      const routes = new RouteTable(dest, {
        readTarget: (schema, name) => catalog.readTarget(schema, name),
        destSchema: cfg.destination.schema,
        mappingOf: mappingLookup(tables),
        database: this.db.database,
        sid: this.source.sid,
        synced: syncedNow,
        onDrift,
      });
      const tagged = await origin;
      if (!tagged) {
        this.#log.debug("writes not tagged with a replication origin: kvsz may not create {name}", {
          name: this.name,
        });
      }
      applier = new Applier(
        this.destination.writers,
        routes,
        progressNow,
        {
          database: this.db.database,
          sid: this.source.sid,
          batchSize: cfg.apply.batchSize,
          commitIntervalMs: cfg.apply.commitIntervalMs,
          streamWaitMs: cfg.apply.streamWaitMs,
          startLsn,
          oneByOneUntil: this.#oneByOneUntil,
          onCommit: (info) => {
            this.#committed();
            this.events.onCommit?.(info);
          },
          onAnomaly: this.events.onAnomaly,
          onOperations: this.events.onOperations,
          watchdog: this.destination.watchdog,
          origin: tagged ? this.name : null,
          ownerToken: claim.token,
          idlePositions: this.destination.idlePositions,
          groupCommits: this.destination.groupCommits,
        },
      );
      // Only a metric: the slot poller tries again.
      const lag = await readSlotLag(src, this.name).catch(() => null);
      if (lag) this.events.onSlotLag?.(lag);
      // Quiet when the attempts before failed while streaming, again and again (see sayFailure).
      const level = this.#streamFailures >= 2 ? "debug" : "info";
      this.#log[level]("streaming from {lsn}", { lsn: formatLsn(startLsn) });
      this.#streaming = true;
      this.events.onConnected?.(true);
      let closed = false;
      const probe = serverProbe(this.source.url);
      const stopWatch = watchSourceShutdown(probe, applier, {
        onShutdown: (answer, stalledMs) => {
          closed = true;
          this.#log.warn(
            "source is shutting down ({answer}) while the destination has not committed what kvsz received " +
              "(the apply has not moved for {seconds} s): closing the replication connection so that the source can stop; " +
              "kvsz resumes from its stored progress when the source is back",
            { answer, seconds: (stalledMs / 1000).toFixed(1) },
          );
          closeAtOnce(replication);
        },
      });
      await streamChanges(replication, applier, {
        slot: this.name,
        publication: publications,
        startLsn,
        serverMajor: major,
        maxQueued: cfg.apply.queueSize,
        streamInProgress: cfg.apply.streamInProgress,
        spoolDir: cfg.apply.spoolDir,
        spoolOnly: this.#spoolOnly,
        log: this.#log,
        stop: this.#stop,
        receiveTimeoutSeconds: cfg.timeouts.replicationReceiveSeconds,
        onWalEnd: this.events.onWalEnd,
        onConfirmed: this.events.onConfirmed,
      }).catch((e) => {
        throw closed ? new Error("replication connection closed: the source shut down") : e;
      }).finally(() => {
        stopWatch();
        probe.release();
      });
      await applier.close();
      applier = null;
      this.#log.info("stopped cleanly");
    } catch (e) {
      if (e instanceof DeadSession) this.destination.renewCatalog(dest);
      throw claim.signal.aborted ? claim.signal.reason : e;
    } finally {
      preparing?.release();
      claim.end();
      this.#claim = null;
      applier?.abort();
      this.events.onConnected?.(false);
      await Promise.all([
        replication.end({ timeout: 0 }), // its final status update is already sent
        src.end({ timeout: 2 }),
      ]).catch(() => {});
    }
  }

  /** Makes the slot synchronized to standbys, or not, as the source's `failover` says (PostgreSQL 17+). */
  async #alignFailover(replication: Sql, slot: SlotInfo, major: number): Promise<void> {
    if (major < 17 || slot.failover === this.source.failover) return;
    await setSlotFailover(replication, this.name, this.source.failover);
    this.#log.info(
      "replication slot {name} {now} synchronized to standbys (failover: {failover})",
      {
        name: this.name,
        now: this.source.failover ? "is now" : "is no longer",
        failover: this.source.failover,
      },
    );
  }

  /**
   * Brings the publication (and the partitions publication, when a
   * `partitions_regex` names the leaves of a partitioned table or it exists)
   * in line with `tables`; returns the names to stream.
   */
  async #syncPublications(src: Sql, tables: ResolvedTable[], major: number): Promise<string[]> {
    const leavesOf = tables.flatMap((t) => t.leavesOf ?? []);
    const wanted = [
      { name: this.name, tables: tables.flatMap((t) => t.published), opts: {} },
      {
        name: partitionsPublicationName(this.name),
        tables: leavesOf,
        opts: { viaRoot: false, createEmpty: false },
      },
    ];
    const names: string[] = [];
    for (const { name, tables, opts } of wanted) {
      const change = await syncPublication(src, name, tables, { major, ...opts });
      if (change.exists) names.push(name);
      if (change.created) this.#log.info("created publication {name}", { name });
      if (change.added.length || change.dropped.length) {
        this.#log.info("publication {name}: added {added}, dropped {dropped}", {
          name,
          added: change.added.join(", ") || "-",
          dropped: change.dropped.join(", ") || "-",
        });
      }
    }
    return names;
  }

  /**
   * Compares the current columns of each table with recorded drift (or
   * stopped for it) with what kvsz knows, records the outcome, and returns
   * the tables that stay stopped: their drift still stops them. A stopped
   * table whose drift is fixed (or whose policy is now `continue`) is left to
   * be copied again.
   */
  async #recheckColumns(
    src: Sql,
    dest: Sql,
    state: {
      tables: ResolvedTable[];
      targets: Map<string, TargetTable>;
      synced: Map<string, SyncedTable>;
    },
  ): Promise<Set<string>> {
    const stays = new Set<string>();
    for (const t of state.tables) {
      const { mapping } = t;
      const record = state.synced.get(mapping.source);
      if (!record?.sourceColumns || (record.drift.length === 0 && record.stoppedLsn === null)) {
        continue;
      }
      const rel = t.copied[0];
      const table = await readSourceTable(src, rel.schema, rel.name);
      if (!table) continue; // resolveTables found it a moment ago; the copy will say
      // Read after the catalog: a layout streamed from below it is not newer than this one.
      const [{ lsn }] = await src.unsafe(
        `SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                      ELSE pg_current_wal_lsn() END)::text AS lsn`,
      );
      const target = state.targets.get(mapping.target)!;
      const names = table.columns.map((c) => c.name);
      const cmp = compareColumns(names, target.columns.keys(), record.sourceColumns);
      const drift = dated(cmp.drift, record.drift, new Date().toISOString());
      await writeColumnState(dest, {
        database: this.db.database,
        sid: this.source.sid,
        sourceTable: mapping.source,
      }, {
        sourceColumns: cmp.known,
        columnsLsn: parseLsn(lsn),
        drift,
        stoppedLsn: record.stoppedLsn,
      });
      Object.assign(record, { sourceColumns: cmp.known, columnsLsn: parseLsn(lsn), drift });
      if (record.stoppedLsn === null) continue;
      const place = {
        source: `${mapping.sourceSchema}.${mapping.sourceName}`,
        target: `${target.schema}.${target.name}`,
      };
      if (stopsTable(drift, mapping.onColumnDrift)) {
        stays.add(mapping.source);
        this.#log.error("{message}", { message: describeDrift(place, drift, true) });
      } else {
        this.#log.info("{table} was stopped for column drift at {lsn}; copying it again", {
          table: place.source,
          lsn: formatLsn(record.stoppedLsn),
        });
      }
    }
    return stays;
  }

  /**
   * True when no other source of the config writes destination table
   * `target`; never for a `discover` entry's table (more may appear).
   */
  #exclusive(target: string): boolean {
    let writers = 0;
    for (const db of this.config.databases) {
      const sources = db.discover ? 2 : db.urls.length;
      writers += sources * db.tables.filter((t) => targetKey(t) === target).length;
    }
    return writers === 1;
  }

  /**
   * Ends this kvsz's walsender of an earlier attempt whose connection was
   * given up as dead: the server keeps it (and the slot) until its
   * wal_sender_timeout, which may be long or off.
   */
  async #endOldWalsender(src: Sql, pid: number): Promise<void> {
    try {
      await src.unsafe("SELECT pg_terminate_backend($1)", [pid]);
      this.#log.warn(
        "ended this kvsz's earlier walsender (pid {pid}), left behind by a connection given up as dead",
        { pid },
      );
      this.#restarting = true; // wait below until the slot is free
    } catch (e) {
      this.#log.warn("could not end the earlier walsender (pid {pid}): {error}", {
        pid,
        error: describeError(e),
      });
    }
  }

  /**
   * Copies a planned copy in the snapshot, taking the process's copy turns and keeping
   * kvsz's records on the shared catalog connection. Each target is analyzed
   * there once copied, in the background (fresh statistics, or the first
   * set-based statements plan against an empty table; a plan made before is
   * replanned when the statistics change), so streaming need not wait for it.
   */
  async #copy(
    plan: CopyPlan,
    { snapshot, turn }: {
      /** The slot's exported snapshot and its consistent point. */
      snapshot: { snapshotName: string; consistentPoint: bigint };
      /** The turn the source started its copy with. */
      turn: CopyTurn;
    },
  ): Promise<void> {
    await copyTables(plan, {
      sourceUrl: this.source.url,
      snapshotName: snapshot.snapshotName,
      snapshotLsn: snapshot.consistentPoint,
      destUrl: this.config.destination.url,
      destParams: destinationParams(this.config),
      destSchema: this.config.destination.schema,
      slots: this.destination.copySlots,
      turn,
      // The attempt's claim lost, the copy stops (its transactions are fenced: see #planCopy).
      signal: this.#claim
        ? AbortSignal.any([this.#stopSignal.signal, this.#claim.signal])
        : this.#stopSignal.signal,
      rate: this.config.sync.rate,
      burst: this.config.sync.burst,
      progress: this.events.syncProgress?.() ?? QUIET_PROGRESS,
      onExpressionError: (table, key) =>
        this.events.onAnomaly?.({ kind: "expression_error", route: { source: table }, key }),
      onCopied: (target) =>
        this.destination.catalogReads.analyze(qualify(target.schema, target.name)),
    });
  }

  /**
   * Copies tables added to an existing slot's publication: a temporary slot
   * exports a snapshot whose LSN is recorded per table, and the stream applies
   * their changes only above it.
   */
  async #copyWithTemporarySlot(jobs: SyncJob[], major: number, src: Sql): Promise<void> {
    const plan = await this.#planCopy(jobs, major, src);
    await this.#withCopyTurn(async (turn) => {
      const replication = connect(this.source.url, { replication: true });
      try {
        const temp = await createSlotWithSnapshot(
          replication,
          `${this.name.slice(0, 50)}_sync_${Date.now() % 1e6}`,
          { major, temporary: true },
        );
        this.#log.info("copying {count} new table(s) at {lsn}", {
          count: jobs.length,
          lsn: formatLsn(temp.consistentPoint),
        });
        await this.#copy(plan, { snapshot: temp, turn });
      } finally {
        await replication.end({ timeout: 2 });
      }
    });
  }

  /**
   * Plans the copy of `jobs` (see planCopy), before the turn and the snapshot;
   * its transactions are fenced by the attempt's claim.
   */
  #planCopy(jobs: SyncJob[], major: number, src: Sql): Promise<CopyPlan> {
    return planCopy(jobs, {
      source: src,
      dest: this.destination.catalog,
      database: this.db.database,
      sid: this.source.sid,
      sourceMajor: major,
      parallelism: this.config.sync.parallelism,
      splitBytes: this.config.sync.splitMb * 1024 * 1024,
      ownerToken: this.#claim?.token,
    });
  }

  /**
   * Runs `fn` with the turn this source starts its copy with, waited for in
   * line before anything of the copy is made (see CopySlots.start); given
   * back at the end unless the copy's first task took it.
   */
  async #withCopyTurn<T>(fn: (turn: CopyTurn) => Promise<T>): Promise<T> {
    const turn = await this.destination.copySlots.start(this.#stopSignal.signal);
    try {
      return await fn(turn);
    } finally {
      turn.release();
    }
  }
}

async function checkWalLevel(src: Sql): Promise<void> {
  const [row] = await src.unsafe(`SHOW wal_level`);
  if (row.wal_level !== "logical") {
    throw new NeedsPersonError(
      `source wal_level is ${row.wal_level}, kvsz needs logical: run ALTER SYSTEM SET wal_level = logical and restart the source server`,
    );
  }
}

async function readTargets(
  catalog: CatalogReads,
  schema: string,
  mappings: TableMapping[],
): Promise<Map<string, TargetTable>> {
  const byKey = new Map(mappings.map((m) => [targetKey(m), m]));
  const found = await Promise.all(
    [...byKey.values()].map((m) => catalog.readTarget(targetSchemaOf(m, schema), m.target)),
  );
  const out = new Map<string, TargetTable>();
  const missing: string[] = [];
  [...byKey].forEach(([key, m], i) => {
    const target = found[i];
    if (target) out.set(key, target);
    else missing.push(`${targetSchemaOf(m, schema)}.${m.target}`);
  });
  if (missing.length > 0) {
    throw new NeedsPersonError(
      `destination table(s) ${
        missing.join(", ")
      } do not exist: create them (kvsz validate prints the DDL)`,
    );
  }
  return out;
}
