/**
 * The `kvsz` command line as a user meets it, run as a real process: help,
 * per-command `--help`, usage errors (exit 2), version, and config mistakes
 * reported all at once (exit 2) before any database is touched.
 */
import assert from "node:assert/strict";
import { runCli, tempConfig } from "../support/run_cli.ts";
import { COMMANDS } from "../../lib/cli/main.ts";
import { VERSION } from "../../lib/version.ts";

Deno.test("kvsz with no command, `help` and `--help` print the command list", async () => {
  for (const args of [[], ["help"], ["--help"], ["-h"]]) {
    const r = await runCli(args);
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.output}`);
    assert.match(r.stdout, /^Usage: kvsz <command> \[flags\]/);
    for (const c of COMMANDS) {
      assert.match(r.stdout, new RegExp(`^  ${c.name} +${escape(c.summary)}$`, "m"));
    }
    assert.equal(r.stderr, "");
  }
});

Deno.test("every command has --help, and `kvsz help <command>` shows the same", async () => {
  const names = COMMANDS.map((c) => c.name);
  for (const expected of ["run", "status", "validate", "version"]) {
    assert.ok(names.includes(expected), `missing command ${expected}`);
  }
  await Promise.all(COMMANDS.map(async (c) => {
    const long = await runCli([c.name, "--help"]);
    assert.equal(long.code, 0, long.output);
    assert.ok(long.stdout.startsWith(`Usage: kvsz ${c.name}`), long.stdout);
    const short = await runCli([c.name, "-h"]);
    assert.equal(short.stdout, long.stdout);
    const viaHelp = await runCli(["help", c.name]);
    assert.equal(viaHelp.stdout, long.stdout);
  }));
  const validate = await runCli(["validate", "--help"]);
  assert.match(validate.stdout, /--config FILE/);
  assert.match(validate.stdout, /--json/);
  assert.match(validate.stdout, /max_wal_senders/);
  const status = await runCli(["status", "--help"]);
  for (const flag of ["--database NAME", "--source SID", "--json"]) {
    assert.ok(status.stdout.includes(flag), status.stdout);
  }
});

Deno.test("an unknown command: one-line error, the usage, exit 2", async () => {
  const r = await runCli(["frobnicate"]);
  assert.equal(r.code, 2);
  assert.equal(r.stdout, "");
  const [first, ...rest] = r.stderr.split("\n");
  assert.equal(first, `kvsz: unknown command "frobnicate"`);
  assert.match(rest.join("\n"), /^Usage: kvsz <command>/);
  const help = await runCli(["help", "frobnicate"]);
  assert.equal(help.code, 2);
  assert.equal(help.stderr.split("\n")[0], `kvsz: unknown command "frobnicate"`);
});

Deno.test("an unknown flag: one-line error naming it, the command's usage, exit 2", async () => {
  for (const cmd of ["validate", "status"]) {
    const r = await runCli([cmd, "--frobnicate"]);
    assert.equal(r.code, 2, r.output);
    assert.equal(r.stdout, "");
    const [first, ...rest] = r.stderr.split("\n");
    assert.match(first, /^kvsz: .*--frobnicate/);
    assert.ok(!first.includes("\n"));
    assert.match(rest.join("\n"), new RegExp(`^Usage: kvsz ${cmd}`));
  }
  const missingValue = await runCli(["validate", "--config"]);
  assert.equal(missingValue.code, 2, missingValue.output);
  assert.match(missingValue.stderr, /^kvsz: .*--config/);
});

Deno.test("version and --version print the version", async () => {
  for (const args of [["version"], ["--version"]]) {
    const r = await runCli(args);
    assert.equal(r.code, 0);
    assert.match(
      r.stdout,
      new RegExp(`^kvsz ${escape(VERSION)} \\(deno \\d+\\.\\d+\\.\\d+, \\w+-\\w+\\)\\n$`),
    );
  }
});

Deno.test("a config with three mistakes: all three reported with file, line and path, exit 2", async () => {
  const password = "TopSecret-123";
  await using file = await tempConfig(`destination:
  url: mysql://kvsz:${password}@db.example/warehouse
databases:
  - database: db1
    urls:
      - url: postgres://kvsz:${password}@db1.example/db1
    tables:
      t1:
        type: mirror
`);
  for (const cmd of ["validate", "status"]) {
    const r = await runCli([cmd, "--config", file.path]);
    assert.equal(r.code, 2, r.output);
    assert.equal(r.stdout, "");
    assert.ok(!r.output.includes(password), r.output);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 3, r.stderr);
    assert.ok(lines[0].startsWith(`${file.path}:2: destination.url: `), lines[0]);
    assert.ok(lines[1].startsWith(`${file.path}:6: databases[0].urls[0].sid: `), lines[1]);
    assert.ok(lines[2].startsWith(`${file.path}:9: databases[0].tables.t1.type: `), lines[2]);
    assert.match(lines[2], /clone, append, history/);
  }
});

Deno.test("a missing config file is a config error (exit 2), found via $KVSZ_CONFIG too", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kvsz-cli-" });
  try {
    const r = await runCli(["validate", "--config", `${dir}/nope.yaml`]);
    assert.equal(r.code, 2, r.output);
    assert.match(r.stderr, /nope\.yaml.*does not exist/);
    const env = await runCli(["status"], { env: { KVSZ_CONFIG: `${dir}/also-nope.yaml` } });
    assert.equal(env.code, 2, env.output);
    assert.match(env.stderr, /also-nope\.yaml/);
    const cwd = await runCli(["status"], { cwd: dir });
    assert.equal(cwd.code, 2, cwd.output);
    assert.match(cwd.stderr, /kvsz\.yaml/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

Deno.test("kvsz run --shard (or $KVSZ_SHARD) with a bad value: one line naming it, exit 2", async () => {
  const flag = await runCli(["run", "--shard", "3/3"]);
  assert.equal(flag.code, 2, flag.output);
  assert.equal(
    flag.stderr.split("\n")[0],
    `kvsz: --shard "3/3": shard 3 does not exist among 3 (shards are numbered 0 to 2); ` +
      `is the StatefulSet's replicas equal to N?`,
  );
  assert.match(flag.stderr, /--shard I\/N/, "the usage follows");
  const env = await runCli(["run"], { env: { KVSZ_SHARD: "kvsz-x" } });
  assert.equal(env.code, 2, env.output);
  assert.match(env.stderr.split("\n")[0], /^kvsz: KVSZ_SHARD "kvsz-x" is not I\/N: /);
});
