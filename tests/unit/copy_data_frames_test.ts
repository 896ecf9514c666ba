import assert from "node:assert/strict";
import { CopyDataFrames } from "../../lib/source/copy_both_tap.ts";

/** A protocol frame: type byte, Int32 length (itself included), body. */
function frame(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + body.length);
  out[0] = type.charCodeAt(0);
  new DataView(out.buffer).setInt32(1, 4 + body.length);
  out.set(body, 5);
  return out;
}

const bodies = [
  new Uint8Array([1, 2, 3]),
  new Uint8Array(0),
  Uint8Array.from({ length: 300 }, (_, i) => i & 0xff),
  new Uint8Array([9]),
];
const stream = new Uint8Array(bodies.flatMap((b) => [...frame("d", b)]));

/** Feeds `chunks` in order and returns the bodies seen. */
async function feed(chunks: Uint8Array[]): Promise<number[][]> {
  const frames = new CopyDataFrames();
  const seen: number[][] = [];
  for (const chunk of chunks) {
    await frames.each(chunk, (buf, start, end) => {
      seen.push([...buf.subarray(start, end)]);
    }, () => {});
  }
  return seen;
}

Deno.test("CopyDataFrames: a frame that is not CopyData is an error naming it", async () => {
  const error = frame("E", new TextEncoder().encode("SERROR\0Mslot gone\0\0"));
  await assert.rejects(
    feed([new Uint8Array([...frame("d", bodies[0]), ...error])]),
    /unexpected protocol message 0x45 among CopyData/,
  );
});

Deno.test("CopyDataFrames: frames split anywhere across socket reads come out whole, in order", async () => {
  const want = bodies.map((b) => [...b]);
  for (let a = 0; a <= stream.length; a++) {
    for (let b = a; b <= stream.length; b += 7) {
      const chunks = [stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)];
      assert.deepEqual(await feed(chunks), want, `split at ${a}, ${b}`);
    }
  }
});

Deno.test("CopyDataFrames: a frame longer than many reads is gathered once", async () => {
  const big = Uint8Array.from({ length: 200_000 }, (_, i) => (i * 7) & 0xff);
  const bytes = frame("d", big);
  const chunks = [];
  for (let i = 0; i < bytes.length; i += 4096) chunks.push(bytes.subarray(i, i + 4096));
  const seen = await feed(chunks);
  assert.equal(seen.length, 1);
  assert.deepEqual(seen[0], [...big]);
});

Deno.test("CopyDataFrames: halt stops after the current frame", async () => {
  const frames = new CopyDataFrames();
  let count = 0;
  await frames.each(stream, () => {
    count++;
  }, () => {
    if (count === 2) frames.halt();
  });
  assert.equal(count, 2);
  assert.equal(frames.halted, true);
});
