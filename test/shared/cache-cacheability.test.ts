// Issue 15, defect 2: the cache and in-flight sharing answer only the
// question they were asked. Against a model upstream that answers each query
// as a strict server would (opcode, RD, CD, AD, OPT presence, EDNS version,
// client subnet all shape its answer), every answer through the cached
// resolver must be the model's own answer to that query, TTLs aside, whether
// it came from the upstream, the cache or a shared resolution. Runs in Node
// and in workerd.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { CacheConfig } from "../../shared/config/schema.ts";
import {
  type DnsOption,
  type DnsPacket,
  type DnsRecord,
  decodeMessage,
  encodeMessage,
} from "../../shared/dns/codec.ts";
import { createCachedResolver } from "../../shared/resolver/cached-resolver.ts";
import type { ResolveOutcome, Resolver } from "../../shared/resolver/create-resolver.ts";

const CONFIG: CacheConfig = {
  size: 1000,
  min_ttl: 0,
  max_ttl: 86_400_000,
  negative_ttl: 3_600_000,
  servfail_ttl: 5000,
  serve_stale: false,
};

const Opcode = { QUERY: 0, NOTIFY: 4, UPDATE: 5 } as const;

interface QuerySpec {
  id: number;
  name: string;
  opcode: number;
  rd: boolean;
  ad: boolean;
  cd: boolean;
  /** undefined = no OPT record. */
  edns?: { version: number; dnssecOk: boolean; subnet?: string };
}

function buildSpecQuery(spec: QuerySpec): Uint8Array {
  const flags =
    (spec.opcode << 11) | (spec.rd ? 0x0100 : 0) | (spec.ad ? 0x0020 : 0) | (spec.cd ? 0x0010 : 0);
  return encodeMessage({
    type: "query",
    id: spec.id,
    flags,
    questions: [{ name: spec.name, type: "A" }],
    additionals: spec.edns ? [optRecord(spec.edns, 0, spec.edns.version)] : [],
  });
}

function optRecord(
  edns: NonNullable<QuerySpec["edns"]>,
  extendedRcode: number,
  version = 0,
): DnsRecord {
  const options: DnsOption[] = edns.subnet
    ? [{ code: 8, family: 1, sourcePrefixLength: 24, scopePrefixLength: 0, ip: edns.subnet }]
    : [];
  return {
    name: ".",
    type: "OPT",
    udpPayloadSize: 1232,
    extendedRcode,
    ednsVersion: version,
    flags: edns.dnssecOk ? 0x8000 : 0,
    options,
  };
}

/** A hash of what the model's data depends on, as the last octet of its A record. */
function dataOctet(spec: QuerySpec): number {
  const text = `${spec.name.toLowerCase()}|${spec.cd}|${spec.edns?.dnssecOk}|${spec.edns?.subnet}`;
  let h = 7;
  for (const c of text) h = (h * 31 + c.charCodeAt(0)) % 251;
  return h + 1;
}

/** What a strict server answers to `spec` (RFC 1035, 6891, 6840, 7871). */
function modelAnswer(spec: QuerySpec): Uint8Array {
  let rcode = 0;
  let extendedRcode = 0;
  if (spec.opcode !== Opcode.QUERY)
    rcode = 4; // NOTIMP
  else if (spec.edns && spec.edns.version !== 0)
    extendedRcode = 1; // BADVERS
  else if (!spec.rd) rcode = 5; // REFUSED: this model does not serve RD=0
  const answered = rcode === 0 && extendedRcode === 0;
  const ad = answered && (spec.ad || spec.edns?.dnssecOk === true);
  const packet: DnsPacket = {
    type: "response",
    id: spec.id,
    flags:
      (spec.opcode << 11) |
      (spec.rd ? 0x0100 : 0) |
      0x0080 |
      (ad ? 0x0020 : 0) |
      (spec.cd ? 0x0010 : 0) |
      rcode,
    questions: [{ name: spec.name, type: "A" }],
    answers: answered
      ? [{ name: spec.name, type: "A", ttl: 300, data: `192.0.2.${dataOctet(spec)}` }]
      : [],
    additionals: spec.edns ? [optRecord(spec.edns, extendedRcode)] : [],
  };
  return encodeMessage(packet);
}

function modelResolver(gate: () => Promise<void>) {
  const calls: QuerySpec[] = [];
  const specs = new Map<number, QuerySpec>();
  const resolver: Resolver = {
    async resolve(query) {
      const spec = specs.get(decodeMessage(query).id ?? -1);
      if (!spec) throw new Error("query with an unknown ID");
      calls.push(spec);
      await gate();
      return { kind: "answer", answer: modelAnswer(spec), route: "r", upstream: "model" };
    },
    resolveRoute: (_name, query, signal) => resolver.resolve(query, signal),
    counters: () => ({}),
    status: () => [],
    start() {},
    async close() {},
  };
  return { resolver, calls, specs };
}

/** The parts of an answer a client checks, TTLs apart. */
function comparable(answer: Uint8Array) {
  const m = decodeMessage(answer);
  return {
    id: m.id,
    flags: m.flags,
    questions: m.questions,
    // Owner names compare without case: a served copy takes the asker's case
    // in the question only (a compressed owner name follows it, this one is not).
    answers: (m.answers ?? []).map((r) => ({
      name: r.name.toLowerCase(),
      type: r.type,
      data: r.data,
    })),
    opt: (m.additionals ?? [])
      .filter((r) => r.type === "OPT")
      .map((r) => ({
        extendedRcode: r.extendedRcode,
        version: r.ednsVersion,
        flags: r.flags,
        options: (r.options ?? []).map((o) => ({ code: o.code, ip: o.ip })),
      })),
  };
}

function ttls(answer: Uint8Array): number[] {
  return (decodeMessage(answer).answers ?? []).map((r) => r.ttl ?? -1);
}

function harness() {
  let now = 5_000_000;
  let release: () => void = () => {};
  let gate = Promise.resolve();
  const model = modelResolver(() => gate);
  const cached = createCachedResolver(model.resolver, CONFIG, () => now);
  let nextId = 1;
  return {
    model,
    cached,
    advance(ms: number) {
      now += ms;
    },
    /** Sends every spec at once, the upstream answering only after all are asked. */
    async batch(
      specs: Omit<QuerySpec, "id">[],
    ): Promise<{ spec: QuerySpec; answer: Uint8Array }[]> {
      gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      const sent = specs.map((s) => {
        const spec = { ...s, id: nextId++ & 0xffff };
        model.specs.set(spec.id, spec);
        return { spec, outcome: cached.resolve(buildSpecQuery(spec)) };
      });
      release();
      return Promise.all(
        sent.map(async ({ spec, outcome }) => ({
          spec,
          answer: ((await outcome) as Extract<ResolveOutcome, { kind: "answer" }>).answer,
        })),
      );
    },
  };
}

const plain: Omit<QuerySpec, "id"> = {
  name: "www.example.test",
  opcode: Opcode.QUERY,
  rd: true,
  ad: false,
  cd: false,
};

describe("cacheability: only the question asked is answered (issue 15, defect 2)", () => {
  const variants: [string, Omit<QuerySpec, "id">][] = [
    ["a NOTIFY", { ...plain, opcode: Opcode.NOTIFY }],
    ["an UPDATE", { ...plain, opcode: Opcode.UPDATE }],
    ["an EDNS version 1 query", { ...plain, edns: { version: 1, dnssecOk: false } }],
    ["a query with RD=0", { ...plain, rd: false }],
    ["a query without EDNS (EDNS answer cached)", plain],
    [
      "a query with EDNS (answer without OPT cached)",
      { ...plain, edns: { version: 0, dnssecOk: false } },
    ],
    [
      "a query from another client subnet",
      { ...plain, edns: { version: 0, dnssecOk: false, subnet: "198.51.100.0" } },
    ],
    ["a query with AD=1", { ...plain, ad: true }],
  ];
  const firstOf = (variant: Omit<QuerySpec, "id">): Omit<QuerySpec, "id"> =>
    variant.edns?.subnet
      ? { ...plain, edns: { version: 0, dnssecOk: false, subnet: "203.0.113.0" } }
      : variant === plain
        ? { ...plain, edns: { version: 0, dnssecOk: false } }
        : plain;

  for (const [what, variant] of variants) {
    it(`${what} after a cached answer gets its own answer`, async () => {
      const t = harness();
      await t.batch([firstOf(variant)]);
      const [got] = await t.batch([variant]);
      expect(comparable(got!.answer)).toEqual(comparable(modelAnswer(got!.spec)));
      expect(t.model.calls).toHaveLength(2);
    });

    it(`${what} in flight beside an ordinary query: neither gets the other's answer`, async () => {
      const t = harness();
      const results = await t.batch([firstOf(variant), variant, firstOf(variant)]);
      for (const { spec, answer } of results) {
        expect(comparable(answer)).toEqual(comparable(modelAnswer(spec)));
      }
      expect(t.model.calls).toHaveLength(2);
    });
  }

  it("still serves and shares the same question: one upstream call for a repeat and a twin", async () => {
    const t = harness();
    const ecs = { ...plain, edns: { version: 0, dnssecOk: true, subnet: "203.0.113.0" } };
    await t.batch([ecs, { ...ecs, name: "WWW.example.TEST" }]);
    const [again] = await t.batch([ecs]);
    expect(comparable(again!.answer)).toEqual(comparable(modelAnswer(again!.spec)));
    expect(t.model.calls).toHaveLength(1);
  });

  it("never serves another query's answer, over random concurrent traffic and time (fast-check)", async () => {
    const spec = fc.record({
      name: fc.constantFrom("a.test", "A.Test", "b.test", "B.TEST", "c.test"),
      opcode: fc.constantFrom(
        Opcode.QUERY,
        Opcode.QUERY,
        Opcode.QUERY,
        Opcode.NOTIFY,
        Opcode.UPDATE,
      ),
      rd: fc.boolean(),
      ad: fc.boolean(),
      cd: fc.boolean(),
      edns: fc.option(
        fc.record({
          version: fc.constantFrom(0, 0, 0, 1),
          dnssecOk: fc.boolean(),
          subnet: fc.option(fc.constantFrom("192.0.2.0", "198.51.100.0"), { nil: undefined }),
        }),
        { nil: undefined },
      ),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.array(spec, { minLength: 1, maxLength: 6 }), fc.nat(400_000)), {
          minLength: 1,
          maxLength: 8,
        }),
        async (batches) => {
          const t = harness();
          for (const [specs, pause] of batches) {
            for (const { spec: sent, answer } of await t.batch(specs)) {
              expect(comparable(answer)).toEqual(comparable(modelAnswer(sent)));
              for (const ttl of ttls(answer)) expect(ttl).toBeLessThanOrEqual(300);
            }
            t.advance(pause);
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});
