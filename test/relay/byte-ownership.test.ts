// Node Buffers (what Node sockets deliver) through shared/'s byte helpers and
// the answer cache: a Buffer's slice() is a view, so every copy must be a
// real one and the cache must never keep or serve memory it shares with a
// caller (issue 15). Node only: the point is Node's Buffer.

import { describe, expect, it } from "vitest";
import type { CacheConfig } from "../../shared/config/schema.ts";
import { copyBytes, plainBytes } from "../../shared/dns/bytes.ts";
import { decodeMessage, encodeMessage } from "../../shared/dns/codec.ts";
import { createFrameReader, frameMessage } from "../../shared/dns/framing.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { ageTtls, readId, withId } from "../../shared/dns/wire.ts";
import { cacheKey, createAnswerCache } from "../../shared/resolver/answer-cache.ts";

const isPlain = (bytes: Uint8Array) => Object.getPrototypeOf(bytes) === Uint8Array.prototype;

const CONFIG: CacheConfig = {
  size: 100,
  min_ttl: 0,
  max_ttl: 86_400_000,
  negative_ttl: 3_600_000,
  servfail_ttl: 5000,
  serve_stale: true,
};

/** An A answer for www.own.test (TTL 300) as a Node Buffer inside a bigger one, as sockets give. */
function bufferAnswer(id: number): Buffer {
  const answer = encodeMessage({
    id,
    type: "response",
    flags: 0x8180,
    questions: [{ name: "www.own.test", type: "A" }],
    answers: [{ name: "www.own.test", type: "A", ttl: 300, data: "192.0.2.1" }],
  });
  const chunk = Buffer.alloc(answer.length + 8);
  chunk.set(answer, 4);
  return chunk.subarray(4, 4 + answer.length);
}

const ttlOf = (answer: Uint8Array) => decodeMessage(answer).answers?.[0]?.ttl;

describe("byte copies of Node Buffers", () => {
  it("copyBytes gives a plain array in fresh memory; plainBytes a plain view of the same", () => {
    const buffer = Buffer.from([1, 2, 3, 4]).subarray(1);
    const copy = copyBytes(buffer);
    const view = plainBytes(buffer);
    expect(isPlain(copy)).toBe(true);
    expect(isPlain(view)).toBe(true);
    expect([...copy]).toEqual([2, 3, 4]);
    buffer[0] = 9;
    expect(copy[0]).toBe(2);
    expect(view[0]).toBe(9);
    // The view's slice() copies, as a Buffer's does not.
    const sliced = view.slice();
    view[0] = 7;
    expect(sliced[0]).toBe(9);
    const plain = new Uint8Array(2);
    expect(plainBytes(plain)).toBe(plain);
  });

  it("withId and ageTtls leave a Buffer they copy unchanged", () => {
    const answer = bufferAnswer(7);
    const renumbered = withId(answer, 8);
    const aged = ageTtls(answer, 100);
    expect(isPlain(renumbered)).toBe(true);
    expect(isPlain(aged)).toBe(true);
    expect(readId(answer)).toBe(7);
    expect(ttlOf(answer)).toBe(300);
    expect(readId(renumbered)).toBe(8);
    expect(ttlOf(aged)).toBe(200);
  });

  it("the frame reader hands out plain arrays when fed Buffers, whole or split", () => {
    const framed = Buffer.concat([frameMessage(bufferAnswer(1)), frameMessage(bufferAnswer(2))]);
    const whole = createFrameReader().push(framed);
    const reader = createFrameReader();
    const split = [...reader.push(framed.subarray(0, 20)), ...reader.push(framed.subarray(20))];
    for (const messages of [whole, split]) {
      expect(messages.map(readId)).toEqual([1, 2]);
      expect(messages.every(isPlain)).toBe(true);
    }
  });
});

describe("the answer cache given a Node Buffer", () => {
  it("keeps its own copy and serves each asker memory of its own", () => {
    let now = 1_000_000;
    const cache = createAnswerCache(CONFIG, () => now);
    const query = (id: number) => buildQuery("www.own.test", 1, { id });
    const key = cacheKey(query(1)) as string;
    const answer = bufferAnswer(1);
    expect(cache.put(key, query(1), answer)).toBeGreaterThan(0);
    // The caller reuses its memory: the cache must not see it.
    answer.fill(0);
    const first = cache.get(key, query(2)) as Uint8Array;
    const second = cache.get(key, query(3)) as Uint8Array;
    expect([readId(first), readId(second)]).toEqual([2, 3]);
    expect(isPlain(first) && isPlain(second)).toBe(true);
    expect(ttlOf(first)).toBe(300);
    // An asker changing its answer changes no other answer.
    first.fill(0xff);
    expect(readId(second)).toBe(3);
    expect(ttlOf(cache.get(key, query(4)) as Uint8Array)).toBe(300);
    // TTLs fall by the time elapsed, hit after hit (no compounding).
    const ttls = [];
    for (let s = 1; s <= 4; s++) {
      now += 1000;
      ttls.push(ttlOf(cache.get(key, query(10 + s)) as Uint8Array));
    }
    expect(ttls).toEqual([299, 298, 297, 296]);
    // Stale answers too are copies (TTL 30), leaving the entry as it was.
    now += 400_000;
    const stale = cache.getStale(key, query(20)) as Uint8Array;
    expect([readId(stale), ttlOf(stale)]).toEqual([20, 30]);
    stale.fill(0);
    expect(ttlOf(cache.getStale(key, query(21)) as Uint8Array)).toBe(30);
  });
});
