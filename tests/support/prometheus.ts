/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4),
 * written from the format's specification (the npm parser drops histogram
 * labels, sums and counts and accepts malformed lines), plus Prometheus's own
 * `promtool check metrics` when it is installed.
 */
import assert from "node:assert/strict";

// ---------------------------------------------------------------------------
// A strict parser of the Prometheus text exposition format (version 0.0.4).
// ---------------------------------------------------------------------------

/** One sample line. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** One metric family: its TYPE, HELP and samples. */
export interface Family {
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help?: string;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Parses `text`; throws on anything the format does not allow, naming the line. */
export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const finished = new Set<string>();
  let current: Family | null = null;
  const seriesSeen = new Set<string>();
  if (text !== "" && !text.endsWith("\n")) throw new Error("exposition must end with a newline");
  const lines = text.split("\n");
  lines.pop();
  const familyOf = (sampleName: string): string => {
    for (const suffix of ["_bucket", "_sum", "_count"]) {
      const base = sampleName.endsWith(suffix) ? sampleName.slice(0, -suffix.length) : null;
      const f = base ? families.get(base) : undefined;
      if (f && (f.type === "histogram" || (f.type === "summary" && suffix !== "_bucket"))) {
        return base!;
      }
    }
    return sampleName;
  };
  const enter = (name: string, lineNo: number): Family => {
    if (current?.name === name) return current;
    if (finished.has(name)) {
      throw new Error(`line ${lineNo}: samples of ${name} are not contiguous`);
    }
    if (current) finished.add(current.name);
    let f = families.get(name);
    if (!f) {
      f = { name, type: "untyped", samples: [] };
      families.set(name, f);
    }
    current = f;
    return f;
  };
  lines.forEach((line, index) => {
    const lineNo = index + 1;
    if (line.trim() === "") return;
    if (line.startsWith("#")) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line);
      if (!m) return; // a plain comment
      const [, keyword, name, rest = ""] = m;
      if (!METRIC_NAME.test(name)) throw new Error(`line ${lineNo}: bad metric name ${name}`);
      const f = enter(name, lineNo);
      if (keyword === "HELP") {
        if (f.help !== undefined) throw new Error(`line ${lineNo}: second HELP for ${name}`);
        f.help = unescapeHelp(rest, lineNo);
      } else {
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(rest.trim())) {
          throw new Error(`line ${lineNo}: unknown type "${rest}"`);
        }
        if (f.samples.length > 0 || (f as Family & { typed?: boolean }).typed) {
          throw new Error(`line ${lineNo}: TYPE for ${name} after its samples or twice`);
        }
        (f as Family & { typed?: boolean }).typed = true;
        f.type = rest.trim() as Family["type"];
      }
      return;
    }
    const sample = parseSample(line, lineNo);
    const f = enter(familyOf(sample.name), lineNo);
    const id = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seriesSeen.has(id)) throw new Error(`line ${lineNo}: duplicate series ${id}`);
    seriesSeen.add(id);
    if (f.type === "counter" && !(sample.value >= 0)) {
      throw new Error(`line ${lineNo}: counter ${sample.name} is negative or NaN`);
    }
    f.samples.push(sample);
  });
  for (const f of families.values()) if (f.type === "histogram") checkHistogram(f);
  return families;
}

function parseSample(line: string, lineNo: number): Sample {
  const fail = (why: string): never => {
    throw new Error(`line ${lineNo}: ${why}: ${line}`);
  };
  let i = 0;
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (!nameMatch) fail("no metric name");
  const name = nameMatch![0];
  i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === "{") {
    i++;
    while (true) {
      while (line[i] === " ") i++;
      if (line[i] === "}") {
        i++;
        break;
      }
      const ln = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i));
      if (!ln) fail("bad label name");
      const labelName = ln![0];
      if (!LABEL_NAME.test(labelName) || labelName.startsWith("__")) fail("reserved label name");
      if (labelName in labels) fail(`duplicate label ${labelName}`);
      i += labelName.length;
      if (line[i] !== "=" || line[i + 1] !== '"') fail('expected ="');
      i += 2;
      let value = "";
      while (true) {
        const ch = line[i];
        if (ch === undefined) fail("unterminated label value");
        if (ch === '"') break;
        if (ch === "\\") {
          const next = line[i + 1];
          if (next === "\\") value += "\\";
          else if (next === '"') value += '"';
          else if (next === "n") value += "\n";
          else fail(`bad escape \\${next}`);
          i += 2;
          continue;
        }
        value += ch;
        i++;
      }
      i++;
      labels[labelName] = value;
      if (line[i] === ",") i++;
      else if (line[i] !== "}") fail("expected , or }");
    }
  }
  const rest = line.slice(i);
  const m = /^[ \t]+(\S+)(?:[ \t]+(-?[0-9]+))?[ \t]*$/.exec(rest);
  if (!m) fail("expected a value and an optional timestamp");
  const value = parseValue(m![1]);
  if (value === null) fail(`bad value ${m![1]}`);
  return { name, labels, value: value! };
}

function parseValue(text: string): number | null {
  if (text === "+Inf" || text === "Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  if (!/^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$/.test(text)) return null;
  return Number(text);
}

function unescapeHelp(text: string, lineNo: number): string {
  return text.replace(/\\(.)/g, (_, c) => {
    if (c === "\\") return "\\";
    if (c === "n") return "\n";
    throw new Error(`line ${lineNo}: bad escape in HELP`);
  });
}

/** Buckets ascending with +Inf last, cumulative, and +Inf equal to _count, per series. */
function checkHistogram(f: Family): void {
  const groups = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const id = JSON.stringify(Object.entries(rest).sort());
    const g = groups.get(id) ?? { buckets: [] };
    groups.set(id, g);
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined) throw new Error(`${s.name} without le`);
      const bound = parseValue(le);
      if (bound === null || Number.isNaN(bound)) throw new Error(`${s.name}: bad le "${le}"`);
      g.buckets.push([bound, s.value]);
    } else if (s.name === `${f.name}_sum`) g.sum = s.value;
    else if (s.name === `${f.name}_count`) g.count = s.value;
    else throw new Error(`${s.name} in histogram ${f.name}`);
  }
  for (const [id, g] of groups) {
    assert.ok(g.buckets.length > 0, `${f.name}${id}: no buckets`);
    assert.equal(g.buckets.at(-1)![0], Infinity, `${f.name}${id}: no +Inf bucket`);
    for (let k = 1; k < g.buckets.length; k++) {
      assert.ok(g.buckets[k][0] > g.buckets[k - 1][0], `${f.name}${id}: buckets not ascending`);
      assert.ok(g.buckets[k][1] >= g.buckets[k - 1][1], `${f.name}${id}: not cumulative`);
    }
    assert.equal(g.count, g.buckets.at(-1)![1], `${f.name}${id}: _count differs from +Inf`);
    assert.ok(g.sum !== undefined, `${f.name}${id}: no _sum`);
  }
}

/** The value of the series of `family` whose labels include `labels`; undefined if none. */
export function valueOf(
  families: Map<string, Family>,
  sampleName: string,
  labels: Record<string, string>,
): number | undefined {
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name !== sampleName) continue;
      if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) return s.value;
    }
  }
  return undefined;
}

/** Runs Prometheus's `promtool check metrics` on `text` when promtool is installed. */
export async function promtoolCheck(text: string): Promise<string | null> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("promtool", {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch {
    return null; // not installed
  }
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  const output = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  // 0: clean; 3: lint remarks only. Anything else (1: parse error) is a failure.
  if (out.code !== 0 && out.code !== 3) throw new Error(`promtool failed: ${output}`);
  assert.ok(!/pars(e|ing) error/i.test(output), output);
  return output;
}

/** Scrapes `/metrics` of the kvsz listening on 127.0.0.1:`port`, parsed strictly. */
export async function scrape(port: number): Promise<Map<string, Family>> {
  return parseExposition(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
}
