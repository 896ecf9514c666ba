/**
 * Certificates for TLS tests, made with the system's `openssl`: a CA, server
 * certificates for chosen names (DNS names or IP addresses), and a client
 * certificate; and a test cluster switched to TLS with one of them.
 */
import type { TestCluster } from "./cluster.ts";

/** A certificate and its key, as files. */
export interface CertFiles {
  cert: string;
  key: string;
}

/** A directory of test certificates; `await using` removes it. */
export class TestCertificates implements AsyncDisposable {
  private constructor(readonly dir: string) {}

  /** A new CA in a new temporary directory. */
  static async create(): Promise<TestCertificates> {
    const dir = await Deno.makeTempDir({ prefix: "kvsz-tls-" });
    const certs = new TestCertificates(dir);
    await openssl([
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      `${dir}/ca.key`,
      "-out",
      `${dir}/ca.crt`,
      "-days",
      "2",
      "-subj",
      "/CN=kvsz test CA",
    ]);
    return certs;
  }

  /** The CA certificate file (what a client's `sslrootcert` names). */
  get ca(): string {
    return `${this.dir}/ca.crt`;
  }

  /**
   * A certificate signed by the CA with common name `cn` and subject
   * alternative names `san` (e.g. `DNS:localhost`, `IP:127.0.0.1`).
   */
  async issue(name: string, cn: string, san: string[] = []): Promise<CertFiles> {
    const base = `${this.dir}/${name}`;
    await openssl([
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      `${base}.key`,
      "-out",
      `${base}.csr`,
      "-subj",
      `/CN=${cn}`,
    ]);
    const ext = san.length > 0
      ? `subjectAltName=${san.join(",")}\n`
      : "basicConstraints=CA:FALSE\n";
    await Deno.writeTextFile(`${base}.ext`, ext);
    await openssl([
      "x509",
      "-req",
      "-in",
      `${base}.csr`,
      "-CA",
      this.ca,
      "-CAkey",
      `${this.dir}/ca.key`,
      "-CAcreateserial",
      "-out",
      `${base}.crt`,
      "-days",
      "2",
      "-extfile",
      `${base}.ext`,
    ]);
    await Deno.chmod(`${base}.key`, 0o600);
    return { cert: `${base}.crt`, key: `${base}.key` };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Turns TLS on in `cluster` with `server` as its certificate (copied into the
 * cluster's data directory, owned by the server's user) and `ca` as the CA of
 * client certificates; `hba` lines go before the cluster's own. Reloads.
 */
export async function serveTls(
  cluster: TestCluster,
  server: CertFiles,
  opts: { ca: string; hba?: string[] },
): Promise<void> {
  const data = `${cluster.server.dir}/data`;
  await Deno.copyFile(server.cert, `${data}/server.crt`);
  await Deno.copyFile(server.key, `${data}/server.key`);
  await Deno.copyFile(opts.ca, `${data}/root.crt`);
  await Deno.chmod(`${data}/server.key`, 0o600);
  if (cluster.server.runAs) {
    for (const f of ["server.crt", "server.key", "root.crt"]) {
      await chown(cluster.server.runAs, `${data}/${f}`);
    }
  }
  if (opts.hba) {
    const hba = await Deno.readTextFile(`${data}/pg_hba.conf`);
    await Deno.writeTextFile(`${data}/pg_hba.conf`, `${opts.hba.join("\n")}\n${hba}`);
  }
  await cluster.server.configure({
    ssl: "on",
    ssl_cert_file: "server.crt",
    ssl_key_file: "server.key",
    ssl_ca_file: "root.crt",
  });
  await cluster.sql().unsafe("SELECT pg_reload_conf()");
}

async function chown(user: string, path: string): Promise<void> {
  const out = await new Deno.Command("chown", { args: [user, path] }).output();
  if (!out.success) throw new Error(`chown ${user} ${path} failed`);
}

async function openssl(args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}
