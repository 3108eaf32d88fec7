import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type DnsPacket,
  type DnsRecord,
  decodeMessage,
  encodeMessage,
} from "../../shared/dns/codec.ts";
import {
  ageTtls,
  minTtl,
  readQuestion,
  readRcode,
  sameQuestion,
  truncateResponse,
  withId,
} from "../../shared/dns/wire.ts";
import { captured } from "../fixtures/packets/captured.ts";
import {
  expectedAged,
  expectedMinTtl,
  fullRcode,
  plainRecords,
  sameRrset,
} from "../fixtures/packets/expected.ts";
import { crashOf } from "../fuzz/wire-fuzz.ts";

/** Every wire helper on `msg`: results and DnsWireErrors are fine, anything else fails. */
function onlyWireErrors(msg: Uint8Array): void {
  const crash = crashOf(msg);
  if (crash !== undefined) throw crash;
}

describe("random input never throws anything but DnsWireError", () => {
  it("random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        onlyWireErrors(bytes);
      }),
      { numRuns: 600 },
    );
  });

  it("a header with small counts followed by random bytes (reaches the record walker)", () => {
    const header = fc.tuple(
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 0, max: 0xffff }),
      fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 4, maxLength: 4 }),
    );
    fc.assert(
      fc.property(header, fc.uint8Array({ maxLength: 300 }), ([id, flags, counts], body) => {
        const msg = new Uint8Array(12 + body.length);
        const view = new DataView(msg.buffer);
        view.setUint16(0, id);
        view.setUint16(2, flags);
        counts.forEach((n, i) => {
          view.setUint16(4 + 2 * i, n);
        });
        msg.set(body, 12);
        onlyWireErrors(msg);
      }),
      { numRuns: 600 },
    );
  });

  it("random mutations of the captured packets", () => {
    const packets = captured.flatMap((c) => [c.query, c.response]);
    const mutation = fc.record({
      index: fc.nat(),
      edits: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 6,
      }),
      cut: fc.option(fc.nat(), { nil: undefined }),
      insert: fc.option(fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 8 })), {
        nil: undefined,
      }),
    });
    fc.assert(
      fc.property(mutation, ({ index, edits, cut, insert }) => {
        let msg = packets[index % packets.length]!.slice();
        for (const [at, value] of edits) msg[at % msg.length] = value;
        if (insert) {
          const at = insert[0] % (msg.length + 1);
          msg = Uint8Array.from([...msg.subarray(0, at), ...insert[1], ...msg.subarray(at)]);
        }
        if (cut !== undefined) msg = msg.subarray(0, cut % (msg.length + 1));
        onlyWireErrors(msg);
      }),
      { numRuns: 1000 },
    );
  });
});

// ---------------------------------------------------------------------------
// Valid messages built with the codec from random parts.

const label = fc.stringMatching(/^[a-zA-Z0-9]([a-zA-Z0-9-]{0,18}[a-zA-Z0-9])?$/);
const domain = fc.array(label, { minLength: 1, maxLength: 4 }).map((labels) => labels.join("."));
const ttl = fc.integer({ min: 0, max: 0x7fffffff });
const ipv4 = fc
  .array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 })
  .map((b) => b.join("."));
const ipv6 = fc
  .array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 })
  .map((g) => g.map((x) => x.toString(16)).join(":"));
const text = fc.array(
  fc.string({ maxLength: 60 }).filter((s) => new TextEncoder().encode(s).length <= 255),
  {
    minLength: 1,
    maxLength: 3,
  },
);

const record: fc.Arbitrary<DnsRecord> = fc.oneof(
  fc.record({ name: domain, type: fc.constant("A"), ttl, data: ipv4 }),
  fc.record({ name: domain, type: fc.constant("AAAA"), ttl, data: ipv6 }),
  fc.record({ name: domain, type: fc.constant("TXT"), ttl, data: text }),
  fc.record({ name: domain, type: fc.constant("CNAME"), ttl, data: domain }),
  fc.record({
    name: domain,
    type: fc.constant("MX"),
    ttl,
    data: fc.record({ preference: fc.integer({ min: 0, max: 0xffff }), exchange: domain }),
  }),
);
const soa: fc.Arbitrary<DnsRecord> = fc.record({
  name: domain,
  type: fc.constant("SOA"),
  ttl,
  data: fc.record({ mname: domain, rname: domain, serial: fc.nat(), minimum: ttl }),
});

const message = fc
  .record({
    id: fc.integer({ min: 0, max: 0xffff }),
    rcode: fc.constantFrom(0, 0, 0, 2, 3, 5),
    qname: domain,
    qtype: fc.constantFrom("A", "AAAA", "TXT", "CNAME", "MX"),
    answers: fc.array(record, { maxLength: 5 }),
    authorities: fc.array(fc.oneof(record, soa), { maxLength: 3 }),
    additionals: fc.array(record, { maxLength: 3 }),
    edns: fc.option(
      fc.record({ dnssecOk: fc.boolean(), udp: fc.integer({ min: 512, max: 4096 }) }),
      {
        nil: undefined,
      },
    ),
  })
  .map((m) => {
    const packet: DnsPacket = {
      type: "response",
      id: m.id,
      flags: 0x0180 | m.rcode,
      questions: [{ name: m.qname, type: m.qtype }],
      answers: m.answers,
      authorities: m.authorities,
      additionals: m.edns
        ? [
            ...m.additionals,
            {
              name: ".",
              type: "OPT",
              udpPayloadSize: m.edns.udp,
              flags: m.edns.dnssecOk ? 0x8000 : 0,
              options: [],
            },
          ]
        : m.additionals,
    };
    return { qname: m.qname, bytes: encodeMessage(packet) };
  });

describe("generated valid messages", () => {
  it("withId changes the ID and nothing else", () => {
    fc.assert(
      fc.property(message, fc.integer({ min: 0, max: 0xffff }), ({ bytes }, id) => {
        const out = withId(bytes, id);
        expect(decodeMessage(out)).toEqual({ ...decodeMessage(bytes), id });
        expect(sameQuestion(out, bytes)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it("ageTtls lowers every TTL by the age (floored at 0) and changes nothing else", () => {
    fc.assert(
      fc.property(message, fc.integer({ min: 0, max: 0x7fffffff }), ({ bytes }, age) => {
        const before = bytes.slice();
        const aged = ageTtls(bytes, age);
        expect(decodeMessage(aged)).toEqual(expectedAged(decodeMessage(bytes), age));
        expect(bytes).toEqual(before);
        const min = minTtl(bytes);
        expect(minTtl(aged)).toBe(min === undefined ? undefined : Math.max(0, min - age));
      }),
      { numRuns: 300 },
    );
  });

  it("minTtl, readRcode and readQuestion agree with the decoded message", () => {
    fc.assert(
      fc.property(message, ({ bytes, qname }) => {
        const decoded = decodeMessage(bytes);
        expect(minTtl(bytes)).toBe(expectedMinTtl(decoded));
        expect(readRcode(bytes)).toBe(fullRcode(decoded));
        expect(readQuestion(bytes).name).toBe(`${qname.toLowerCase()}.`);
      }),
      { numRuns: 300 },
    );
  });

  it("truncateResponse fits the limit and keeps a prefix of whole RRsets", () => {
    fc.assert(
      fc.property(message, fc.integer({ min: 12, max: 700 }), ({ bytes }, limit) => {
        const out = truncateResponse(bytes, limit);
        if (bytes.length <= limit) {
          expect(out).toBe(bytes);
          return;
        }
        expect(out.length).toBeLessThanOrEqual(limit);
        const all = plainRecords(decodeMessage(bytes));
        const kept = plainRecords(decodeMessage(out));
        expect(kept).toEqual(all.slice(0, kept.length));
        if (kept.length > 0 && kept.length < all.length) {
          expect(sameRrset(all[kept.length - 1]!, all[kept.length]!)).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("sameQuestion against decoded names", () => {
  const flipCase = (text: string, mask: number) =>
    [...text].map((c, i) => ((mask >> (i % 30)) & 1 ? c.toUpperCase() : c.toLowerCase())).join("");

  it("is true exactly when the names match case-insensitively and type and class match", () => {
    fc.assert(
      fc.property(
        domain,
        domain,
        fc.integer({ min: 0, max: 2 ** 30 - 1 }),
        fc.constantFrom(1, 28),
        fc.constantFrom(1, 28),
        fc.boolean(),
        (x, y, mask, tx, ty, same) => {
          const other = same ? flipCase(x, mask) : y;
          const a = encodeMessage({
            id: 1,
            questions: [{ name: x, type: tx === 1 ? "A" : "AAAA" }],
          });
          const b = encodeMessage({
            id: 2,
            questions: [{ name: other, type: ty === 1 ? "A" : "AAAA" }],
          });
          const expected = x.toLowerCase() === other.toLowerCase() && tx === ty;
          expect(sameQuestion(a, b)).toBe(expected);
        },
      ),
      { numRuns: 500 },
    );
  });
});
