/** Folding changes by key: net effect, first operation, anomalies known in advance, TOAST. */
import assert from "node:assert/strict";
import {
  CloneFold,
  firstOpAnomaly,
  HistoryFold,
  keyOf,
  keyText,
  mergeUnchanged,
  nullUnchanged,
} from "../../lib/apply/fold.ts";

const COLS = [0, 1, 2];
const k = (id: string) => ({ text: keyText([id]), key: [id] });

Deno.test("keyText: distinct for distinct key values, NULL apart from the string 'NULL'", () => {
  const texts = [
    keyText(["a"]),
    keyText([null]),
    keyText(["N"]),
    keyText(["a", "b"]),
    keyText(["ab", ""]),
    keyText(["a", "b", null]),
    keyText([null, "ab"]),
    keyText(["", "ab"]),
    keyText(["NULL", "x"]),
    keyText([null, "x"]),
  ];
  assert.equal(new Set(texts).size, texts.length);
  assert.equal(keyText(["1", "2"]), keyText(["1", "2"]));
  assert.equal(keyText([undefined]), keyText([null]));
});

Deno.test("keyText: integer-looking values stay distinct from every other spelling", () => {
  // Canonical integers become numbers; every other spelling keeps its text.
  const values = ["0", "-0", "00", "1", "01", "-1", "+1", "1.0", "1e3", "1000", " 1", "", "-"];
  const ids = values.map((v) => keyText([v]));
  assert.equal(new Set(ids).size, values.length);
  assert.equal(keyText(["1000"]), 1000);
  assert.equal(keyText(["-42"]), -42);
  assert.equal(keyText(["999999999999999"]), 999999999999999); // 15 digits: exact
  // 16 digits and more would round as doubles: kept as text.
  assert.equal(keyText(["9007199254740993"]), "9007199254740993");
  assert.notEqual(keyText(["9007199254740993"]), keyText(["9007199254740992"]));
  assert.equal(keyText(["-1000000000000000"]), "-1000000000000000");
});

Deno.test("keyOf picks key columns by source index", () => {
  assert.deepEqual(keyOf(["1", "x", "2"], [2, 0]), ["2", "1"]);
  assert.deepEqual(keyOf(["1", undefined], [1]), [undefined]);
});

Deno.test("mergeUnchanged / nullUnchanged fill only unchanged-TOAST values", () => {
  const prev = ["1", "old", null];
  const next = ["1", undefined, "n"];
  assert.deepEqual(mergeUnchanged(prev, next, COLS), ["1", "old", "n"]);
  assert.equal(mergeUnchanged(prev, ["1", "a", "b"], COLS).length, 3);
  const same = ["1", "a", "b"];
  assert.equal(mergeUnchanged(prev, same, COLS), same, "no copy without unchanged values");
  assert.deepEqual(nullUnchanged(next, COLS), ["1", null, "n"]);
  assert.deepEqual(next, ["1", undefined, "n"], "input left alone");
});

Deno.test("firstOpAnomaly: what a first operation meets when the destination disagrees", () => {
  assert.equal(firstOpAnomaly("I"), "insert_existing");
  assert.equal(firstOpAnomaly("U"), "update_missing");
  assert.equal(firstOpAnomaly("D"), "delete_missing");
});

Deno.test("clone fold: one entry per key with the final row and the first operation", () => {
  const f = new CloneFold(COLS);
  const a = k("1");
  const b = k("2");
  const c = k("3");
  f.insert(a.text, a.key, ["1", "x", "y"]);
  f.update(a.text, a.key, ["1", "x2", "y"]);
  f.update(b.text, b.key, ["2", "p", "q"]);
  f.delete(b.text, b.key);
  f.delete(c.text, c.key);
  f.insert(c.text, c.key, ["3", "again", null]);
  assert.equal(f.size, 3);
  assert.deepEqual([...f.entries.values()], [
    { key: ["1"], first: "I", row: ["1", "x2", "y"] },
    { key: ["2"], first: "U", row: null },
    { key: ["3"], first: "D", row: ["3", "again", null] },
  ]);
  assert.deepEqual(f.anomalies, []);
});

Deno.test("clone fold: unchanged TOAST stays undefined (keep destination) until a value is known", () => {
  const f = new CloneFold(COLS);
  const a = k("1");
  f.update(a.text, a.key, ["1", undefined, "v1"]);
  f.update(a.text, a.key, ["1", undefined, "v2"]);
  assert.deepEqual(f.entries.get(a.text)!.row, ["1", undefined, "v2"]);
  const b = k("2");
  f.insert(b.text, b.key, ["2", "big", "v"]);
  f.update(b.text, b.key, ["2", undefined, "w"]);
  assert.deepEqual(f.entries.get(b.text)!.row, ["2", "big", "w"]);
});

Deno.test("clone fold: anomalies after the first operation are known without the destination", () => {
  const f = new CloneFold(COLS);
  const a = k("1");
  f.insert(a.text, a.key, ["1", "x", "y"]);
  f.insert(a.text, a.key, ["1", "x2", "y2"]); // present: insert_existing, replaces
  f.delete(a.text, a.key);
  f.delete(a.text, a.key); // absent: delete_missing
  f.update(a.text, a.key, ["1", undefined, "z"]); // absent: update_missing, TOAST -> NULL
  assert.deepEqual(f.anomalies, [
    { kind: "insert_existing", key: ["1"] },
    { kind: "delete_missing", key: ["1"] },
    { kind: "update_missing", key: ["1"] },
  ]);
  assert.deepEqual(f.entries.get(a.text), { key: ["1"], first: "I", row: ["1", null, "z"] });
});

Deno.test("clone fold: an INSERT never carries undefined values", () => {
  const f = new CloneFold(COLS);
  const a = k("1");
  f.insert(a.text, a.key, ["1", undefined, "y"]);
  assert.deepEqual(f.entries.get(a.text)!.row, ["1", null, "y"]);
});

Deno.test("history fold: versions chain with exact starts, ends and deleted flags", () => {
  const f = new HistoryFold(COLS);
  const a = k("1");
  f.insert(a.text, a.key, ["1", "v1", "x"], "T1");
  f.update(a.text, a.key, ["1", "v2", "x"], "T2");
  f.update(a.text, a.key, ["1", "v3", "x"], "T2");
  f.delete(a.text, a.key, "T3");
  f.insert(a.text, a.key, ["1", "v4", "x"], "T4");
  const e = f.entries.get(a.text)!;
  assert.equal(e.first, "I");
  assert.equal(e.firstTime, "T1");
  assert.deepEqual(e.versions, [
    { row: ["1", "v1", "x"], start: "T1", firstStart: true, end: "T2", deleted: false },
    { row: ["1", "v2", "x"], start: "T2", firstStart: false, end: "T2", deleted: false },
    { row: ["1", "v3", "x"], start: "T2", firstStart: false, end: "T3", deleted: true },
    { row: ["1", "v4", "x"], start: "T4", firstStart: false, end: null, deleted: false },
  ]);
  assert.equal(f.versionCount, 4);
  assert.deepEqual(f.anomalies, []);
});

Deno.test("history fold: first UPDATE or DELETE closes the destination row at its time", () => {
  const f = new HistoryFold(COLS);
  const a = k("1");
  const b = k("2");
  f.update(a.text, a.key, ["1", undefined, "x"], "T1");
  f.update(a.text, a.key, ["1", undefined, "y"], "T2");
  f.delete(b.text, b.key, "T1");
  const ea = f.entries.get(a.text)!;
  assert.equal(ea.first, "U");
  assert.equal(ea.firstTime, "T1");
  // Unchanged TOAST is carried from the closed destination row into both versions.
  assert.deepEqual(ea.versions.map((v) => v.row), [["1", undefined, "x"], ["1", undefined, "y"]]);
  assert.deepEqual(ea.versions.map((v) => [v.start, v.end]), [["T1", "T2"], ["T2", null]]);
  const eb = f.entries.get(b.text)!;
  assert.deepEqual([eb.first, eb.firstTime, eb.versions], ["D", "T1", []]);
  // Re-inserted after a first DELETE: only the destination knows whether it is the key's first row.
  f.insert(b.text, b.key, ["2", "z", "z"], "T5");
  assert.deepEqual(eb.versions.map((v) => [v.start, v.firstStart]), [["T5", true]]);
});

Deno.test("history fold: in-batch anomalies", () => {
  const f = new HistoryFold(COLS);
  const a = k("1");
  f.insert(a.text, a.key, ["1", "a", "x"], "T1");
  f.insert(a.text, a.key, ["1", "b", "x"], "T2"); // insert_existing: closes at T2, new from T2
  f.delete(a.text, a.key, "T3");
  f.delete(a.text, a.key, "T3"); // delete_missing
  f.update(a.text, a.key, ["1", undefined, "y"], "T4"); // update_missing: fresh version, NULL
  assert.deepEqual(f.anomalies.map((x) => x.kind), [
    "insert_existing",
    "delete_missing",
    "update_missing",
  ]);
  assert.deepEqual(f.entries.get(a.text)!.versions, [
    { row: ["1", "a", "x"], start: "T1", firstStart: true, end: "T2", deleted: false },
    { row: ["1", "b", "x"], start: "T2", firstStart: false, end: "T3", deleted: true },
    { row: ["1", null, "y"], start: "T4", firstStart: false, end: null, deleted: false },
  ]);
});
