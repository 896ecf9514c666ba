/**
 * One ordinary connection per source server (host and port), shared by the
 * shutdown watches of all its tenants: a thousand tenants whose apply waits
 * behind a busy destination ask their server "are you stopping?" through one
 * session, instead of each opening (and authenticating) its own. The session
 * is opened on first use with the URL of a tenant that is registered, closes
 * after {@link IDLE_SECONDS} unused, and is dropped when that tenant leaves
 * (its database may be gone), to be opened again through another.
 */
import { connect, type Sql } from "../pg/connect.ts";
import { serverOf } from "../pg/conninfo.ts";

/** Seconds the shared session stays open unused. */
const IDLE_SECONDS = 10;

interface Server {
  /** The registered tenants' URLs, with how many registrations each. */
  urls: Map<string, number>;
  client: Sql | null;
  /** The URL {@link client} was opened with. */
  clientUrl: string;
}

const servers = new Map<string, Server>();

/** A registration of one tenant with its server's shared session. */
export interface ServerProbe {
  /** Runs `SELECT 1` on the server's shared session. */
  ask(): Promise<unknown>;
  /** Ends the registration (once). */
  release(): void;
}

/** Registers the source at `url` with its server's shared session. */
export function serverProbe(url: string): ServerProbe {
  const key = serverOf(url);
  let server = servers.get(key);
  if (!server) servers.set(key, server = { urls: new Map(), client: null, clientUrl: "" });
  const s = server;
  s.urls.set(url, (s.urls.get(url) ?? 0) + 1);
  let released = false;
  return {
    ask() {
      if (!s.client) {
        s.clientUrl = s.urls.keys().next().value ?? url;
        s.client = connect(s.clientUrl, { idleTimeout: IDLE_SECONDS });
      }
      return s.client.unsafe("SELECT 1");
    },
    release() {
      if (released) return;
      released = true;
      const left = (s.urls.get(url) ?? 1) - 1;
      if (left > 0) {
        s.urls.set(url, left);
        return;
      }
      s.urls.delete(url);
      if (s.client && (s.clientUrl === url || s.urls.size === 0)) {
        s.client.end({ timeout: 1 }).catch(() => {});
        s.client = null;
      }
      if (s.urls.size === 0) servers.delete(key);
    },
  };
}
