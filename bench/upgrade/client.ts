/**
 * The live client of the `upgrade` scenario: a pgbench-like transaction
 * (one account updated, one history row) plus an order (its identity and an
 * invoice number from the unowned sequence returned), one statement per
 * transaction, at a fixed rate over a few connections; against the source
 * first, then against the destination once told. Every acknowledged write is
 * kept with the time of its acknowledgement, and every failure's time.
 */
import postgres from "postgres";
import { onCleanup } from "../cleanup.ts";
import { now, sleep } from "../util.ts";
import { CUSTOMERS } from "./schema.ts";

/** One acknowledged write. */
export interface Ack {
  side: "source" | "destination";
  order: number;
  invoice: number;
  /** `pgbench_history.aid`: a number unique to the write. */
  history: number;
  /** Monotonic ms of the acknowledgement. */
  at: number;
}

const STATEMENT = `WITH a AS (UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = $1),
       h AS (INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, $2, 1, now()))
  INSERT INTO orders (customer, total) VALUES ($3, 1) RETURNING id::bigint::text AS id, invoice`;

/** The client; {@link LiveClient.start} begins writing to the source. */
export class LiveClient {
  readonly acked: Ack[] = [];
  /** Monotonic ms of every failed attempt, with the side it was sent to. */
  readonly failures: { side: "source" | "destination"; at: number }[] = [];
  #side: "source" | "destination" = "source";
  #sql: postgres.Sql;
  #stop = false;
  #workers: Promise<void>[] = [];
  #n = 0;
  #unregister: () => void;

  constructor(
    sourceUrl: string,
    readonly opts: { rate: number; accounts: number; connections: number },
  ) {
    this.#sql = this.#pool(sourceUrl);
    this.#unregister = onCleanup("upgrade client", () => this.stop());
  }

  #pool(url: string): postgres.Sql {
    return postgres(url, {
      max: this.opts.connections,
      onnotice: () => {},
      connect_timeout: 5,
      connection: { application_name: "kvsz-bench-upgrade-client" },
    });
  }

  get side(): "source" | "destination" {
    return this.#side;
  }

  /** Starts the workers: a shared schedule of `rate` transactions/s. */
  start(): void {
    let t0 = now();
    let k = 0;
    const interval = 1000 / this.opts.rate;
    const worker = async () => {
      while (!this.#stop) {
        let due = t0 + k * interval;
        if (now() - due > 1000) { // more than a second behind: do not burst to catch up
          t0 = now() - k * interval;
          due = now();
        }
        k++;
        if (due > now()) await sleep(due - now());
        if (this.#stop) break;
        await this.#once();
      }
    };
    this.#workers = Array.from({ length: this.opts.connections }, worker);
  }

  async #once(): Promise<void> {
    const n = ++this.#n;
    const side = this.#side;
    const sql = this.#sql;
    try {
      const [o] = await sql.unsafe(STATEMENT, [
        (n * 7919) % this.opts.accounts + 1,
        n,
        n % CUSTOMERS + 1,
      ]);
      this.acked.push({
        side,
        order: Number(o.id),
        invoice: Number(o.invoice),
        history: n,
        at: now(),
      });
    } catch {
      // Read-only (the fence), or the fence ended the session (the pool reconnects).
      this.failures.push({ side, at: now() });
      await sleep(20);
    }
  }

  /** Points the client at the destination. */
  async moveTo(url: string): Promise<void> {
    const old = this.#sql;
    this.#sql = this.#pool(url);
    this.#side = "destination";
    await old.end({ timeout: 1 }).catch(() => {});
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await Promise.all(this.#workers);
    await this.#sql.end({ timeout: 2 }).catch(() => {});
    this.#unregister();
  }
}
