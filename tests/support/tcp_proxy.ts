/**
 * A TCP proxy a test controls, to make a network path fail the way real ones
 * do: `freeze()` stops carrying bytes on the connections open now while
 * keeping their sockets open (a dead router, a frozen VM); new connections
 * are carried unless `refuseNew` says otherwise.
 */

interface Pair {
  client: Deno.Conn;
  server: Deno.Conn;
  frozen: boolean;
}

/** A proxy from a free loopback port to `targetPort`. */
export class TcpProxy implements AsyncDisposable {
  readonly #listener: Deno.Listener;
  readonly #pairs = new Set<Pair>();
  #accepted = 0;
  /** New connections are accepted but never carried (the whole path is dead). */
  blackholeNew = false;

  constructor(readonly targetPort: number) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accept().catch(() => {});
  }

  /** The port clients connect to. */
  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  /** Connections accepted so far. */
  get accepted(): number {
    return this.#accepted;
  }

  /** Stops carrying bytes on every connection open now; their sockets stay open. */
  freeze(): void {
    for (const pair of this.#pairs) pair.frozen = true;
  }

  async #accept(): Promise<void> {
    for await (const client of this.#listener) {
      this.#accepted++;
      if (this.blackholeNew) {
        const pair = { client, server: client, frozen: true };
        this.#pairs.add(pair);
        continue;
      }
      let server: Deno.Conn;
      try {
        server = await Deno.connect({ hostname: "127.0.0.1", port: this.targetPort });
      } catch {
        client.close();
        continue;
      }
      const pair: Pair = { client, server, frozen: false };
      this.#pairs.add(pair);
      const done = () => {
        if (pair.frozen) return; // a frozen path keeps its sockets open
        this.#pairs.delete(pair);
        close(client);
        close(server);
      };
      this.#pump(pair, client, server).finally(done);
      this.#pump(pair, server, client).finally(done);
    }
  }

  async #pump(pair: Pair, from: Deno.Conn, to: Deno.Conn): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    while (true) {
      if (pair.frozen) return await new Promise<void>(() => {}); // until disposed
      let n: number | null;
      try {
        n = await from.read(buf);
      } catch {
        return;
      }
      if (n === null || pair.frozen) {
        return pair.frozen ? await new Promise<void>(() => {}) : undefined;
      }
      try {
        let off = 0;
        while (off < n) off += await to.write(buf.subarray(off, n));
      } catch {
        return;
      }
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    for (const pair of this.#pairs) {
      close(pair.client);
      close(pair.server);
    }
    this.#pairs.clear();
    return Promise.resolve();
  }
}

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}
