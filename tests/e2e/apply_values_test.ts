/**
 * The set-based table writer on a real server, values: unchanged TOAST kept (clone) or carried
 * (history), array parameters, text that round-trips unchanged. Changes are built by hand, flushed
 * inside BEGIN/COMMIT, and the destination rows checked exactly.
 */
import { clusterSuite } from "../support/cluster.ts";
import {
  anomalies,
  apply,
  assertEquals,
  FIRST,
  fresh,
  HIST_COLS,
  ins,
  OPEN,
  route,
  rows,
  T1,
  T2,
  T3,
  T4,
  ts,
  upd,
} from "../support/apply_writer.ts";
import { TableBatch } from "../../lib/apply/table_batch.ts";
import { textArray } from "../../lib/apply/text_array.ts";
import assertModule from "node:assert/strict";

clusterSuite("set-based table writer: values", {
  "unchanged TOAST: clone keeps the destination value, history carries it": async (c) => {
    const big = "x".repeat(20_000) + "end";
    const big2 = "y".repeat(20_000);
    const dst = await fresh(
      c,
      `CREATE TABLE t (id int PRIMARY KEY, n int, doc text, j jsonb);
       CREATE TABLE h (id int, n int, doc text, ${HIST_COLS})`,
    );
    const rc = route({
      table: "t",
      cols: [["id", "integer"], ["n", "integer"], ["doc", "text"], ["j", "jsonb"]],
      key: ["id"],
      hasSid: false,
    });
    const bc = new TableBatch(rc);
    await apply(dst, bc, [
      ins(rc, "1", "0", big, `{"a": "${big2}"}`),
      ins(rc, "2", "0", big2, null),
    ]);
    let r = await apply(dst, bc, [
      upd(rc, ["1", "1", undefined, undefined]),
      upd(rc, ["1", "2", undefined, undefined]),
      upd(rc, ["2", "1", undefined, `{"b": 1}`]),
      upd(rc, ["3", "1", undefined, undefined]), // missing: inserted with NULL doc
      ins(rc, "4", "0", "fresh", null),
      upd(rc, ["4", "1", undefined, undefined]), // inserted in this batch: keeps "fresh"
    ]);
    assertEquals(anomalies(r), ["update_missing:3"]);
    assertEquals(
      await rows(
        dst,
        `SELECT id, n, doc = '${big}', doc = '${big2}', doc, j->>'b' FROM t WHERE id <> 1 ORDER BY id`,
      ),
      [["2", "1", "false", "true", big2, "1"], ["3", "1", null, null, null, null], [
        "4",
        "1",
        "false",
        "false",
        "fresh",
        null,
      ]],
    );
    assertEquals(
      await rows(dst, `SELECT n, doc = '${big}', j->>'a' = '${big2}' FROM t WHERE id = 1`),
      [["2", "true", "true"]],
    );

    const rh = route({
      table: "h",
      cols: [["id", "integer"], ["n", "integer"], ["doc", "text"]],
      key: ["id"],
      mode: "history",
      hasSid: false,
    });
    const bh = new TableBatch(rh);
    await apply(dst, bh, [[ins(rh, "1", "0", big), T1]]);
    r = await apply(dst, bh, [
      [upd(rh, ["1", "1", undefined]), T2], // carried from the closed destination row
      [upd(rh, ["1", "2", undefined]), T3], // carried from the previous version in the batch
    ]);
    assertEquals(anomalies(r), []);
    // Key change carries the value from the closed row as well.
    r = await apply(dst, bh, [[upd(rh, ["9", "3", undefined], { key: ["1", null, null] }), T4]]);
    assertEquals(anomalies(r), []);
    assertEquals(
      await rows(
        dst,
        `SELECT id, n, doc = '${big}', kvsz_start, kvsz_end FROM h ORDER BY kvsz_start, id`,
      ),
      [
        ["1", "0", "true", FIRST, ts(T2)],
        ["1", "1", "true", ts(T2), ts(T3)],
        ["1", "2", "true", ts(T3), ts(T4)],
        ["9", "3", "true", ts(T4), OPEN],
      ],
    );
    await dst.end();
  },

  "array parameters: porsager (fetch_types off) cannot send JS arrays, textArray can": async (
    c,
  ) => {
    const dst = await fresh(c, `SELECT 1`);
    const tricky = [
      'a"b',
      "c\\d",
      "e,f",
      "{g}",
      "h\ni",
      "",
      null,
      "NULL",
      "ünï😀",
      " sp ",
      "\\x0a",
    ];
    // connect() runs with fetch_types: false, so porsager sends a JS array as `'' + array`.
    await assertModule.rejects(
      dst.unsafe(`SELECT x FROM unnest($1::text[]) x`, [tricky as never], { prepare: true }),
      /malformed array literal/,
    );
    const res = await dst.unsafe(
      `SELECT x, x IS NULL AS isnull FROM unnest($1::text[]) WITH ORDINALITY AS u(x, n) ORDER BY n`,
      [textArray(tricky)],
      { prepare: true },
    );
    assertEquals(res.map((r) => r.x), tricky);
    await dst.end();
  },

  "text values round-trip: quotes, backslashes, commas, braces, newlines, empty, NULL, unicode":
    async (c) => {
      const dst = await fresh(
        c,
        `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
       CREATE TYPE pair AS (x int, y text);
       CREATE TABLE t (id int PRIMARY KEY, s text, arr text[], ia int[], m mood, cp pair, bin bytea,
                       money money, n numeric(10,2), ts timestamptz, iv interval, js jsonb, vc varchar(5))`,
      );
      const cols: [string, string][] = [
        ["id", "integer"],
        ["s", "text"],
        ["arr", "text[]"],
        ["ia", "integer[]"],
        ["m", "mood"],
        ["cp", "pair"],
        ["bin", "bytea"],
        ["money", "money"],
        ["n", "numeric(10,2)"],
        ["ts", "timestamp with time zone"],
        ["iv", "interval"],
        ["js", "jsonb"],
        ["vc", "character varying(5)"],
      ];
      const r0 = route({ table: "t", cols, key: ["id"], hasSid: false });
      const b = new TableBatch(r0);
      const strings = [
        'a"b',
        "c\\d",
        "e,f",
        "{g}",
        "h\ni",
        "",
        "NULL",
        "ünï😀",
        " sp ",
        "'q'",
        "\t",
        "\\x00",
      ];
      const changes = strings.map((s, i) =>
        ins(
          r0,
          String(i),
          s,
          `{"${s.replace(/[\\"]/g, "\\$&")}",NULL}`,
          "{1,NULL,3}",
          "happy",
          `(1,"${s.replace(/[\\"]/g, "\\$&")}")`,
          "\\xdeadbeef00",
          "$1,234.50",
          "-12.34",
          "2024-01-01 10:00:00.123456+00",
          "1 day 02:03:04.5",
          `{"k": "${s.replace(/[\\"]/g, "\\$&").replace(/\n/g, "\\n").replace(/\t/g, "\\t")}"}`,
          "abc",
        )
      );
      changes.push(
        ins(r0, "100", null, null, null, null, null, null, null, null, null, null, null, null),
      );
      await apply(dst, b, changes);
      const got = await rows(
        dst,
        `SELECT id, s, arr[1], arr[2] IS NULL, ia::text, m::text, (cp).y, bin::text, money::text, n::text, ts::text, iv::text, js->>'k', vc FROM t ORDER BY id`,
      );
      const want: (string | null)[][] = strings.map((s, i) => [
        String(i),
        s,
        s,
        "true",
        "{1,NULL,3}",
        "happy",
        s,
        "\\xdeadbeef00",
        "$1,234.50",
        "-12.34",
        "2024-01-01 10:00:00.123456+00",
        "1 day 02:03:04.5",
        s,
        "abc",
      ]);
      want.push(["100", null, null, "true", ...new Array<null>(10).fill(null)]);
      assertEquals(got, want);
      // The same values as update keys and values (NULL values included).
      const r = await apply(
        dst,
        b,
        strings.map((s, i) =>
          upd(r0, [
            String(i),
            s + s,
            null,
            null,
            "ok",
            null,
            null,
            null,
            null,
            null,
            null,
            null,
            null,
          ])
        ),
      );
      assertEquals(anomalies(r), []);
      assertEquals(
        await rows(dst, `SELECT s, m::text, arr FROM t WHERE id < 100 ORDER BY id`),
        strings.map((s) => [s + s, "ok", null]),
      );
      await dst.end();
    },
});
