/**
 * The Kubernetes manifests in deploy/ (no cluster here): every YAML file
 * parses; the StatefulSet's shard count is its replicas, its probes hit the
 * endpoints kvsz serves on the port its config listens on, its passwords come
 * from the Secret the config names, and the ConfigMap's config is one kvsz
 * loads.
 */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { parseConfig } from "../../lib/config/load.ts";
import { parseShard } from "../../lib/engine/shard.ts";
import { parseListen } from "../../lib/observe/http_server.ts";

const DEPLOY = new URL("../../deploy/", import.meta.url).pathname;

// deno-lint-ignore no-explicit-any
type Doc = any;

/** Every YAML document under deploy/, with its file. */
async function manifests(): Promise<{ file: string; doc: Doc }[]> {
  const out: { file: string; doc: Doc }[] = [];
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}${entry.name}`;
      if (entry.isDirectory) await walk(`${path}/`);
      else if (/\.ya?ml$/.test(entry.name)) {
        for (const d of parseAllDocuments(await Deno.readTextFile(path))) {
          assert.deepEqual(d.errors.map(String), [], path);
          out.push({ file: path.slice(DEPLOY.length), doc: d.toJS() });
        }
      }
    }
  };
  await walk(DEPLOY);
  return out;
}

function one(docs: { doc: Doc }[], kind: string): Doc {
  const found = docs.filter((d) => d.doc?.kind === kind);
  assert.equal(found.length, 1, `one ${kind} in deploy/`);
  return found[0].doc;
}

Deno.test("deploy/: every YAML file parses, each manifest has an apiVersion, kind and name", async () => {
  const docs = await manifests();
  assert.ok(docs.length >= 5, docs.map((d) => d.file).join(", "));
  for (const { file, doc } of docs) {
    assert.ok(doc.apiVersion && doc.kind, `${file}: apiVersion and kind`);
    if (doc.kind !== "Kustomization") assert.ok(doc.metadata?.name, `${file}: metadata.name`);
  }
  const kinds = docs.map((d) => d.doc.kind).sort();
  assert.deepEqual(kinds, ["ConfigMap", "Kustomization", "Secret", "Service", "StatefulSet"]);
  const kustomization = one(docs, "Kustomization");
  const files = new Set(docs.map((d) => d.file.replace(/^kubernetes\//, "")));
  for (const r of kustomization.resources) assert.ok(files.has(r), `kustomization lists ${r}`);
});

Deno.test("deploy/: the StatefulSet runs shard <ordinal>/<replicas> with the config, secrets and probes kvsz needs", async () => {
  const docs = await manifests();
  const sts = one(docs, "StatefulSet");
  const configMap = one(docs, "ConfigMap");
  const secret = one(docs, "Secret");
  const service = one(docs, "Service");
  const pod = sts.spec.template.spec;
  const [container] = pod.containers;
  const env = new Map<string, Doc>(container.env.map((e: Doc) => [e.name, e]));

  // --shard $(POD_NAME)/N, N = replicas; every pod name parses to its own shard.
  const args: string[] = container.args;
  const shardArg = args[args.indexOf("--shard") + 1];
  assert.match(shardArg, /^\$\(POD_NAME\)\/\d+$/);
  assert.equal(env.get("POD_NAME").valueFrom.fieldRef.fieldPath, "metadata.name");
  const replicas = sts.spec.replicas;
  for (let i = 0; i < replicas; i++) {
    const podName = `${sts.metadata.name}-${i}`;
    assert.deepEqual(parseShard(shardArg.replace("$(POD_NAME)", podName)), {
      index: i,
      count: replicas,
    });
  }
  assert.throws(() =>
    parseShard(shardArg.replace("$(POD_NAME)", `${sts.metadata.name}-${replicas}`))
  );

  // The config comes from the ConfigMap, at the path given to --config.
  const configPath = args[args.indexOf("--config") + 1];
  const mount = container.volumeMounts.find((m: Doc) => configPath.startsWith(`${m.mountPath}/`));
  const volume = pod.volumes.find((v: Doc) => v.name === mount.name);
  assert.equal(volume.configMap.name, configMap.metadata.name);
  const text = configMap.data[configPath.slice(mount.mountPath.length + 1)];
  assert.ok(text, `the ConfigMap holds ${configPath}`);

  // Every ${VAR} of the config is set by the pod; passwords from the Secret's keys.
  const vars = [...new Set([...text.matchAll(/\$\{(\w+)\}/g)].map((m: string[]) => m[1]))];
  assert.ok(vars.length > 0);
  for (const name of vars) {
    const ref = env.get(name)?.valueFrom?.secretKeyRef;
    assert.ok(ref, `${name} comes from a Secret`);
    assert.equal(ref.name, secret.metadata.name);
    assert.ok(ref.key in secret.stringData, `the Secret has ${ref.key}`);
  }
  const config = parseConfig(text, configPath, Object.fromEntries(vars.map((v) => [v, "pw"])));
  assert.ok(config.databases.length > 0);

  // Probes and scraping on the port the config listens on, reachable from outside the pod.
  const listen = parseListen(config.metrics.listen);
  assert.equal(listen.hostname, "0.0.0.0");
  const port = container.ports.find((p: Doc) => p.name === "metrics");
  assert.equal(port.containerPort, listen.port);
  assert.equal(container.livenessProbe.httpGet.path, "/healthz");
  assert.equal(container.startupProbe.httpGet.path, "/healthz");
  assert.equal(container.readinessProbe.httpGet.path, "/readyz");
  for (const probe of ["livenessProbe", "readinessProbe", "startupProbe"]) {
    assert.equal(container[probe].httpGet.port, "metrics", probe);
  }
  for (
    const annotations of [sts.spec.template.metadata.annotations, service.metadata.annotations]
  ) {
    assert.equal(annotations["prometheus.io/scrape"], "true");
    assert.equal(annotations["prometheus.io/port"], String(listen.port));
    assert.equal(annotations["prometheus.io/path"], "/metrics");
  }

  // The headless service names the pods and selects them.
  assert.equal(service.spec.clusterIP, "None");
  assert.equal(sts.spec.serviceName, service.metadata.name);
  assert.deepEqual(service.spec.selector, sts.spec.selector.matchLabels);
  for (const [k, v] of Object.entries(sts.spec.selector.matchLabels)) {
    assert.equal(sts.spec.template.metadata.labels[k], v, `the pods carry the selector's ${k}`);
  }
  assert.equal(service.spec.ports[0].port, listen.port);

  // A graceful stop has time to commit.
  assert.ok(pod.terminationGracePeriodSeconds >= 30);
});
