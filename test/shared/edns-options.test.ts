// The hop-by-hop OPT rewrite (shared/dns/edns-options.ts): what leaves toward
// an upstream, what comes back, and RFC 8467 padding. Expected options are
// read with readEdns (message.ts's own parser), not with the code under test.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ANSWER_PAD_BLOCK,
  EdnsOptionCode,
  forUpstream,
  fromUpstream,
  hasPadding,
  padAnswerFor,
  padQuery,
  QUERY_PAD_BLOCK,
  rewriteOptions,
} from "../../shared/dns/edns-options.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import {
  DnsWireError,
  type EdnsOption,
  type RecordInfo,
  readEdns,
  walkRecords,
} from "../../shared/dns/wire.ts";
import { captured, exchange } from "../fixtures/packets/captured.ts";

interface Built {
  msg: Uint8Array;
  options: EdnsOption[];
}

const u16 = (n: number) => [n >> 8, n & 0xff];

/**
 * A query for `name` with an OPT carrying `options`, followed by `after`
 * (uncompressed A records named a.test, each 15 bytes) in the additional section.
 */
function withOpt(options: EdnsOption[], after = 0, name = "www.example.test"): Built {
  const base = buildQuery(name, 1, { id: 0x1234 });
  const rdata = options.flatMap((o) => [...u16(o.code), ...u16(o.data.length), ...o.data]);
  const opt = [0, ...u16(41), ...u16(1232), 0, 0, 0x80, 0, ...u16(rdata.length), ...rdata];
  const a = [1, 0x61, 4, 0x74, 0x65, 0x73, 0x74, 0, ...u16(1), ...u16(1), 0, 0, 0, 60];
  const record = [...a, ...u16(4), 192, 0, 2, 1];
  const tail = Array.from({ length: after }, () => record).flat();
  const msg = Uint8Array.from([...base, ...opt, ...tail]);
  msg[11] = 1 + after; // ARCOUNT
  return { msg, options };
}

/** Every record but the OPT, as bytes, in order. */
function otherRecords(msg: Uint8Array): string[] {
  const out: string[] = [];
  walkRecords(msg, (rr: RecordInfo) => {
    if (rr.type !== 41) out.push(Buffer.from(msg.subarray(rr.offset, rr.end)).toString("hex"));
  });
  return out;
}

const codes = (msg: Uint8Array) => readEdns(msg)?.options.map((o) => o.code) ?? [];

const optionArb = fc.record({
  code: fc.oneof(fc.constantFrom(3, 8, 10, 11, 12, 15), fc.integer({ min: 0, max: 0xffff })),
  data: fc.uint8Array({ maxLength: 40 }),
});
const builtArb = fc
  .tuple(fc.array(optionArb, { maxLength: 6 }), fc.integer({ min: 0, max: 2 }))
  .map(([options, after]) => withOpt(options, after));
const keepArb = fc.func(fc.boolean()) as fc.Arbitrary<(code: number) => boolean>;

describe("rewriteOptions (property)", () => {
  it("keeps exactly the chosen options, in order, and nothing else changes", () => {
    fc.assert(
      fc.property(builtArb, keepArb, ({ msg, options }, keep) => {
        const out = rewriteOptions(msg, keep);
        const expected = options.filter((o) => keep(o.code) && o.code !== 12);
        const edns = readEdns(out)!;
        expect(edns.options.map((o) => [o.code, [...o.data]])).toEqual(
          expected.map((o) => [o.code, [...o.data]]),
        );
        expect(otherRecords(out)).toEqual(otherRecords(msg));
        expect(out.subarray(0, 12)).toEqual(msg.subarray(0, 12)); // header, ARCOUNT included
        expect(edns.udpSize).toBe(1232);
        expect(edns.dnssecOk).toBe(true);
        expect(out.length).toBeLessThanOrEqual(msg.length); // never grows without padding
        if (out !== msg) expect(out.buffer).not.toBe(msg.buffer); // a copy is fresh
      }),
      { numRuns: 400 },
    );
  });

  it("in place, removes the same bytes as a fresh rewrite, within the message's own memory", () => {
    fc.assert(
      fc.property(builtArb, keepArb, ({ msg }, keep) => {
        const fresh = rewriteOptions(msg, keep);
        const own = msg.slice();
        const out = rewriteOptions(own, keep, undefined, true);
        expect([...out]).toEqual([...fresh]);
        if (fresh !== msg) expect(out.buffer).toBe(own.buffer); // no copy
        expect(out.byteOffset).toBe(own.byteOffset);
      }),
      { numRuns: 400 },
    );
  });

  it("returns the message itself when nothing is dropped (round trip)", () => {
    fc.assert(
      fc.property(builtArb, ({ msg, options }) => {
        fc.pre(options.every((o) => o.code !== 12));
        expect(rewriteOptions(msg, () => true)).toBe(msg);
      }),
    );
  });

  it("pads to a multiple of the block with one zero-filled option, and no more than needed", () => {
    fc.assert(
      fc.property(builtArb, fc.integer({ min: 1, max: 600 }), ({ msg, options }, block) => {
        const out = rewriteOptions(msg, () => true, block);
        expect(out.length % block).toBe(0);
        const edns = readEdns(out)!;
        const pads = edns.options.filter((o) => o.code === 12);
        expect(pads).toHaveLength(1);
        expect(pads[0]!.data.every((b) => b === 0)).toBe(true);
        expect(edns.options.filter((o) => o.code !== 12).map((o) => o.code)).toEqual(
          options.filter((o) => o.code !== 12).map((o) => o.code),
        );
        const bare = rewriteOptions(msg, (c) => c !== 12).length;
        expect(out.length - bare - 4).toBeLessThan(block); // the padding data alone
        expect(otherRecords(out)).toEqual(otherRecords(msg));
      }),
      { numRuns: 400 },
    );
  });

  it("rejects malformed input with DnsWireError only", () => {
    fc.assert(
      fc.property(
        builtArb,
        fc.integer({ min: 0, max: 2000 }),
        fc.integer({ min: 0, max: 255 }),
        ({ msg }, at, byte) => {
          const bad = msg.slice();
          bad[at % bad.length] = byte;
          for (const f of [forUpstream, fromUpstream, (m: Uint8Array) => padQuery(m)]) {
            try {
              f(bad);
            } catch (error) {
              expect(error).toBeInstanceOf(DnsWireError);
            }
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});

describe("hop-by-hop rules", () => {
  const all = [3, 8, 10, 11, 12, 15, 65001].map((code) => ({ code, data: Uint8Array.of(1, 2) }));

  it("toward an upstream only ECS is left", () => {
    expect(codes(forUpstream(withOpt(all).msg))).toEqual([EdnsOptionCode.ECS]);
  });

  it("from an upstream NSID, cookie, keepalive and padding go; ECS, EDE and others stay", () => {
    expect(codes(fromUpstream(withOpt(all).msg))).toEqual([8, 15, 65001]);
  });

  it("a message without OPT, or with an empty OPT, is returned as is (no copy)", () => {
    const plain = buildQuery("www.example.test", 1);
    const empty = buildQuery("www.example.test", 1, { ednsUdpSize: 1232 });
    for (const m of [plain, empty]) {
      expect(forUpstream(m)).toBe(m);
      expect(fromUpstream(m)).toBe(m);
    }
    expect(padQuery(plain)).toBe(plain); // no EDNS: not padded
  });

  it("real kdig +nsid +cookie: the query loses both, unbound's answer loses both", () => {
    const { query, response } = exchange("nsid-cookie-options");
    expect(codes(query)).toEqual(expect.arrayContaining([3, 10]));
    expect(codes(forUpstream(query))).toEqual([]);
    expect(codes(response).some((c) => c === 3 || c === 10)).toBe(true);
    expect(codes(fromUpstream(response.slice())).filter((c) => c === 3 || c === 10)).toEqual([]);
  });

  it("every captured answer keeps its records byte for byte", () => {
    for (const c of captured) {
      // fromUpstream works in the answer's own memory: a copy, so the fixture stays as captured.
      expect(otherRecords(fromUpstream(c.response.slice()))).toEqual(otherRecords(c.response));
    }
  });

  it("padQuery replaces a client's padding with 128-byte blocks", () => {
    const { msg } = withOpt([{ code: 12, data: new Uint8Array(300) }]);
    const out = padQuery(forUpstream(msg));
    expect(out.length).toBe(QUERY_PAD_BLOCK);
    expect(codes(out)).toEqual([12]);
  });

  it("answers are padded to 468-byte blocks only when the query was padded", () => {
    const answer = exchange("txt-big-edns").response;
    const padded = withOpt([{ code: 12, data: new Uint8Array(10) }]).msg;
    const unpadded = withOpt([]).msg;
    expect(hasPadding(padded)).toBe(true);
    expect(hasPadding(unpadded)).toBe(false);
    expect(padAnswerFor(unpadded, answer)).toBe(answer);
    const out = padAnswerFor(padded, answer);
    expect(out.length % ANSWER_PAD_BLOCK).toBe(0);
    expect(otherRecords(out)).toEqual(otherRecords(answer));
  });

  it("records after the OPT move with it; one that could point past it is refused", () => {
    const { msg } = withOpt([{ code: 10, data: new Uint8Array(8) }], 2);
    const out = forUpstream(msg);
    expect(otherRecords(out)).toEqual(otherRecords(msg));
    expect(out.length).toBe(msg.length - 12);
    // The record after the OPT turned into a CNAME (type 5): its RDATA may hold pointers.
    const cname = msg.slice();
    cname[cname.length - 15 + 9] = 5;
    expect(() => forUpstream(cname)).toThrow(DnsWireError);
  });

  it("an option running past the OPT is bad_opt", () => {
    const { msg } = withOpt([{ code: 10, data: new Uint8Array(8) }]);
    const bad = msg.slice();
    bad[bad.length - 9] = 99; // the option's length
    expect(() => forUpstream(bad)).toThrow(expect.objectContaining({ code: "bad_opt" }));
    expect(padQuery(bad)).toBe(bad); // a malformed query goes unpadded
  });
});
