import { describe, expect, it } from "vitest";
import {
  type DnsPacket,
  type DnsRecord,
  decodeMessage,
  encodeMessage,
} from "../../shared/dns/codec.ts";
import {
  ageTtls,
  buildErrorResponse,
  DnsWireError,
  EdeCode,
  isQuery,
  MAX_MESSAGE_SIZE,
  minTtl,
  Rcode,
  RrType,
  readEdns,
  readHeader,
  readId,
  readQuestion,
  readRcode,
  rrTypeFromName,
  rrTypeName,
  sameQuestion,
  setId,
  truncateResponse,
  walkRecords,
  withId,
} from "../../shared/dns/wire.ts";
import { captured, exchange } from "../fixtures/packets/captured.ts";
import {
  expectedAged,
  expectedMinTtl,
  fullRcode,
  opcodeNumber,
  optOf,
  plainRecords,
  rcodeNumber,
  sameRrset,
  typeNumber,
} from "../fixtures/packets/expected.ts";

const messages = captured.flatMap((c) => [
  { label: `${c.name} query`, bytes: c.query, qname: c.qname },
  { label: `${c.name} response`, bytes: c.response, qname: c.qname },
]);

const wireError = (fn: () => unknown): DnsWireError => {
  try {
    fn();
  } catch (error) {
    if (error instanceof DnsWireError) return error;
    throw error;
  }
  throw new Error("expected a DnsWireError, got a result");
};

const stripTtls = (p: DnsPacket): DnsPacket => {
  const strip = (list: DnsPacket["answers"]) => list?.map(({ ttl: _ttl, ...rest }) => rest);
  return {
    ...p,
    answers: strip(p.answers),
    authorities: strip(p.authorities),
    additionals: strip(p.additionals),
  };
};

describe("captured fixtures", () => {
  it("cover what the wire helpers must handle", () => {
    const names = captured.map((c) => c.name);
    expect(captured.length).toBeGreaterThanOrEqual(25);
    for (const needed of [
      "cname-chain",
      "txt-big-edns",
      "nxdomain",
      "nodata",
      "dnssec-do-a",
      "a-udp-noedns",
    ]) {
      expect(names).toContain(needed);
    }
    expect(captured.some((c) => c.transport === "tcp")).toBe(true);
    expect(captured.some((c) => c.command.startsWith("kdig"))).toBe(true);
    expect(captured.some((c) => c.command.startsWith("dig"))).toBe(true);
    expect(exchange("txt-big-edns").response.length).toBeGreaterThan(512);
  });
});

describe("readHeader / readQuestion / readEdns / readRcode agree with the codec on captured packets", () => {
  it.each(messages)("$label", ({ bytes, qname }) => {
    const p = decodeMessage(bytes);
    const h = readHeader(bytes);
    expect(h).toEqual({
      id: p.id,
      qr: p.flag_qr,
      opcode: opcodeNumber(p.opcode),
      aa: p.flag_aa,
      tc: p.flag_tc,
      rd: p.flag_rd,
      ra: p.flag_ra,
      ad: p.flag_ad,
      cd: p.flag_cd,
      rcode: rcodeNumber(p.rcode),
      qdcount: p.questions?.length,
      ancount: p.answers?.length,
      nscount: p.authorities?.length,
      arcount: p.additionals?.length,
    });
    expect(readId(bytes)).toBe(p.id);
    expect(isQuery(bytes)).toBe(!p.flag_qr);

    const q = p.questions?.[0];
    if (q) {
      const read = readQuestion(bytes);
      expect(read.name).toBe(qname.toLowerCase());
      expect(read.type).toBe(typeNumber(q.type));
      expect(read.class).toBe(1);
      expect(q.class).toBe("IN");
    } else {
      expect(wireError(() => readQuestion(bytes)).code).toBe("no_question");
    }

    const opt = optOf(p);
    const edns = readEdns(bytes);
    if (!opt) expect(edns).toBeUndefined();
    else {
      expect(edns).toEqual({
        udpSize: opt.udpPayloadSize,
        extendedRcode: opt.extendedRcode,
        version: opt.ednsVersion,
        dnssecOk: opt.flag_do,
        options: (opt.options ?? []).map((o) => ({
          code: o.code,
          data: new Uint8Array(o.data ?? []),
        })),
      });
    }
    expect(readRcode(bytes)).toBe(fullRcode(p));
  });

  it("reads the EDE option unbound sends with a REFUSED (EDE 18, Prohibited)", () => {
    const edns = readEdns(exchange("refused-prohibited-ede").response);
    const ede = edns?.options.find((o) => o.code === 15);
    expect(ede).toBeDefined();
    expect((ede!.data[0]! << 8) | ede!.data[1]!).toBe(EdeCode.PROHIBITED);
  });

  it("keeps the DO bit of a DNSSEC query and its answer", () => {
    const { query, response } = exchange("dnssec-do-a");
    expect(readEdns(query)?.dnssecOk).toBe(true);
    expect(readEdns(response)?.dnssecOk).toBe(true);
    expect(decodeMessage(response).answers?.map((a) => a.type)).toContain("RRSIG");
  });
});

describe("minTtl", () => {
  it.each(captured)("matches the TTL computed from the decoded $name response", ({ response }) => {
    expect(minTtl(response)).toBe(expectedMinTtl(decodeMessage(response)));
  });

  it("uses the SOA of a captured NXDOMAIN and NODATA answer (RFC 2308)", () => {
    // zone: SOA TTL 3600, MINIMUM 300
    expect(minTtl(exchange("nxdomain").response)).toBe(300);
    expect(minTtl(exchange("nodata").response)).toBe(300);
    expect(minTtl(exchange("cname-chain").response)).toBe(60);
    expect(minTtl(exchange("refused-blocked-ede").response)).toBeUndefined();
  });

  const soa = (ttl: number, minimum: number) => ({
    name: "example.com",
    type: "SOA",
    ttl,
    data: { mname: "ns.example.com", rname: "host.example.com", serial: 1, minimum },
  });
  const message = (
    flags: number,
    answers: DnsPacket["answers"],
    authorities: DnsPacket["authorities"],
  ) =>
    encodeMessage({
      type: "response",
      id: 1,
      flags,
      questions: [{ name: "x.example.com", type: "A" }],
      answers,
      authorities,
    });

  it("takes min(SOA TTL, SOA MINIMUM) for negative answers, whichever is lower", () => {
    expect(minTtl(message(0x0183, [], [soa(3600, 300)]))).toBe(300);
    expect(minTtl(message(0x0180, [], [soa(120, 900)]))).toBe(120);
  });

  it("lowers a negative TTL further by answer records before the NXDOMAIN", () => {
    const cname = { name: "x.example.com", type: "CNAME", ttl: 30, data: "gone.example.com" };
    expect(minTtl(message(0x0183, [cname], [soa(3600, 300)]))).toBe(30);
  });

  it("is undefined for a negative answer without an SOA and for a SERVFAIL without records", () => {
    expect(minTtl(message(0x0183, [], []))).toBeUndefined();
    expect(minTtl(message(0x0182, [], []))).toBeUndefined();
  });

  it("counts a TTL with the top bit set as 0 (RFC 2181 §8)", () => {
    const a = { name: "x.example.com", type: "A", ttl: 0x80000000, data: "192.0.2.1" };
    const b = { name: "x.example.com", type: "A", ttl: 50, data: "192.0.2.2" };
    expect(minTtl(message(0x0180, [a, b], []))).toBe(0);
  });

  it("ignores the OPT record's TTL field (extended RCODE, flags)", () => {
    const a = { name: "x.example.com", type: "A", ttl: 50, data: "192.0.2.1" };
    const bytes = encodeMessage({
      type: "response",
      questions: [{ name: "x.example.com", type: "A" }],
      answers: [a],
      additionals: [
        { name: ".", type: "OPT", udpPayloadSize: 1232, flags: 0x8000, extendedRcode: 0 },
      ],
    });
    expect(minTtl(bytes)).toBe(50);
  });
});

describe("ageTtls", () => {
  const ages = [0, 1, 59, 100, 299.7, 5000];

  it.each(captured)(
    "lowers every TTL of $name by the age and changes nothing else",
    ({ response }) => {
      const before = response.slice();
      const original = decodeMessage(response);
      for (const age of ages) {
        const aged = ageTtls(response, age);
        expect(aged).not.toBe(response);
        expect(aged.length).toBe(response.length);
        const decoded = decodeMessage(aged);
        expect(decoded).toEqual(expectedAged(original, age));
        expect(stripTtls(decoded)).toEqual(stripTtls(original));
      }
      expect(response).toEqual(before);
    },
  );

  it("keeps minTtl consistent for a negative answer whose SOA TTL exceeds MINIMUM", () => {
    const bytes = encodeMessage({
      type: "response",
      flags: 0x0183,
      questions: [{ name: "x.example.com", type: "A" }],
      authorities: [
        {
          name: "example.com",
          type: "SOA",
          ttl: 3600,
          data: { mname: "a.example", rname: "b.example", minimum: 300 },
        },
      ],
    });
    expect(minTtl(bytes)).toBe(300);
    const aged = ageTtls(bytes, 100);
    expect(minTtl(aged)).toBe(200);
    expect(decodeMessage(aged).authorities?.[0]?.ttl).toBe(200);
  });

  it("leaves the OPT record's TTL field (extended RCODE, DO bit) untouched", () => {
    const { response } = exchange("dnssec-do-a");
    const aged = ageTtls(response, 1_000_000);
    expect(readEdns(aged)).toEqual(readEdns(response));
    expect(minTtl(aged)).toBe(0);
  });

  it("rejects a negative or non-finite age", () => {
    const { response } = exchange("a-udp-noedns");
    for (const age of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(wireError(() => ageTtls(response, age)).code).toBe("bad_argument");
    }
  });
});

describe("message IDs", () => {
  it.each(messages)("withId on $label changes bytes 0-1 only", ({ bytes }) => {
    const before = bytes.slice();
    const id = (readId(bytes) + 0x1111) & 0xffff;
    const out = withId(bytes, id);
    expect(readId(out)).toBe(id);
    expect(out.subarray(2)).toEqual(bytes.subarray(2));
    expect(bytes).toEqual(before);
    expect(decodeMessage(out)).toEqual({ ...decodeMessage(bytes), id });
  });

  it("setId writes in place and rejects IDs that are not 16-bit integers", () => {
    const bytes = exchange("aaaa").query.slice();
    setId(bytes, 0xbeef);
    expect([bytes[0], bytes[1]]).toEqual([0xbe, 0xef]);
    for (const id of [-1, 0x10000, 1.5, Number.NaN]) {
      expect(wireError(() => setId(bytes, id)).code).toBe("bad_argument");
      expect(wireError(() => withId(bytes, id)).code).toBe("bad_argument");
    }
  });

  it("isQuery needs a header and QR=0", () => {
    expect(isQuery(exchange("aaaa").query)).toBe(true);
    expect(isQuery(exchange("aaaa").response)).toBe(false);
    expect(isQuery(exchange("aaaa").query.subarray(0, 11))).toBe(false);
  });
});

describe("sameQuestion", () => {
  it.each(captured.filter((c) => c.name !== "refused-prohibited-noedns"))(
    "matches the $name query and its response",
    ({ query, response }) => {
      expect(sameQuestion(query, response)).toBe(true);
    },
  );

  it("compares names case-insensitively and type and class exactly", () => {
    const { query, response } = exchange("mixed-case-0x20");
    expect(decodeMessage(response).questions?.[0]?.name).toBe("mIxEd.FiXtUrEs.TeSt");
    expect(sameQuestion(query, exchange("a-udp-noedns").query)).toBe(false);
    expect(sameQuestion(exchange("a-udp-noedns").query, exchange("aaaa").query)).toBe(false);
    expect(sameQuestion(exchange("a-udp-noedns").query, exchange("a-kdig-edns").query)).toBe(true);
    expect(sameQuestion(query, response)).toBe(true);
  });

  it("is false, not an error, when either side is malformed or has no question", () => {
    const { query } = exchange("a-udp-noedns");
    expect(sameQuestion(query, query.subarray(0, 20))).toBe(false);
    expect(sameQuestion(new Uint8Array(3), query)).toBe(false);
    expect(sameQuestion(query, exchange("refused-prohibited-noedns").response)).toBe(false);
  });
});

describe("truncateResponse", () => {
  it("returns the message itself when it fits", () => {
    const { response } = exchange("txt-big-edns");
    expect(truncateResponse(response, response.length)).toBe(response);
    expect(truncateResponse(response, MAX_MESSAGE_SIZE)).toBe(response);
  });

  it("cuts the big TXT answer to 512 bytes: TC=1, decodable, question and OPT kept, no partial RRset", () => {
    const { response } = exchange("txt-big-edns");
    const out = truncateResponse(response, 512);
    expect(out.length).toBeLessThanOrEqual(512);
    const d = decodeMessage(out);
    const o = decodeMessage(response);
    expect(d.flag_tc).toBe(true);
    expect(d.id).toBe(o.id);
    expect(d.questions).toEqual(o.questions);
    expect(d.answers).toEqual([]);
    expect(optOf(d)).toEqual(optOf(o));
    expect(readEdns(out)).toEqual(readEdns(response));
  });

  it("keeps a whole CNAME RRset and drops the A RRset that does not fit", () => {
    const { response } = exchange("cname-chain");
    const out = truncateResponse(response, response.length - 1);
    const d = decodeMessage(out);
    expect(d.flag_tc).toBe(true);
    expect(d.answers?.map((a) => a.type)).toEqual(["CNAME", "CNAME"]);
    expect(optOf(d)).toBeDefined();
  });

  it("never splits the 40-record A RRset", () => {
    const { response } = exchange("many-a-edns");
    const o = decodeMessage(response);
    expect(o.answers).toHaveLength(40);
    for (const limit of [512, 600, 686]) {
      const d = decodeMessage(truncateResponse(response, limit));
      expect(d.answers).toEqual([]);
      expect(d.flag_tc).toBe(true);
    }
    // 12 header + 24 question + 40 x 16 answers + 11 OPT = 687
    const d = decodeMessage(truncateResponse(response, 687));
    expect(d.answers).toEqual(o.answers);
    expect(d.authorities).toEqual([]);
    expect(d.flag_tc).toBe(true);
  });

  const optLength = (opt: DnsRecord) =>
    11 + (opt.options ?? []).reduce((n, o) => n + 4 + (o.data?.length ?? 0), 0);
  const responses = captured.filter((c) => c.response.length > 40);
  it.each(responses)(
    "on $name, at every limit: fits, decodes, keeps a prefix of whole RRsets",
    ({ response }) => {
      const original = decodeMessage(response);
      const all = plainRecords(original);
      const step = response.length > 300 ? 7 : 1;
      let previousKept = 0;
      for (let limit = 12; limit < response.length; limit += step) {
        const out = truncateResponse(response, limit);
        expect(out.length).toBeLessThanOrEqual(limit);
        const d = decodeMessage(out);
        expect(d.id).toBe(original.id);
        expect(d.flag_tc).toBe(true);
        const kept = plainRecords(d);
        expect(kept).toEqual(all.slice(0, kept.length));
        if (kept.length > 0 && kept.length < all.length) {
          expect(sameRrset(all[kept.length - 1]!, all[kept.length]!)).toBe(false);
        }
        expect(kept.length).toBeGreaterThanOrEqual(previousKept);
        previousKept = kept.length;
        if (d.questions?.length) expect(d.questions).toEqual(original.questions);
        const opt = optOf(original);
        if (opt && kept.length > 0) expect(optOf(d)).toEqual(opt);
        if (opt && !optOf(d) && d.questions?.length)
          expect(out.length + optLength(opt)).toBeGreaterThan(limit);
      }
    },
  );

  it("falls back to the question alone, then the header alone, for tiny limits", () => {
    const { response } = exchange("txt-big-edns");
    const q = decodeMessage(truncateResponse(response, 40));
    expect(q.questions).toHaveLength(1);
    expect(q.additionals).toEqual([]);
    const h = truncateResponse(response, 12);
    expect(h.length).toBe(12);
    expect(readHeader(h)).toMatchObject({
      tc: true,
      qdcount: 0,
      ancount: 0,
      nscount: 0,
      arcount: 0,
    });
  });

  it("keeps an OPT that comes before other additional records, or re-adds it when cut", () => {
    const glue = (name: string, data: string) => ({ name, type: "A", ttl: 60, data });
    const bytes = encodeMessage({
      type: "response",
      id: 9,
      questions: [{ name: "example.com", type: "NS" }],
      answers: [{ name: "example.com", type: "NS", ttl: 60, data: "ns1.example.com" }],
      additionals: [
        { name: ".", type: "OPT", udpPayloadSize: 1232, flags: 0x8000 },
        glue("ns1.example.com", "192.0.2.1"),
        glue("ns2.example.com", "192.0.2.2"),
      ],
    });
    const full = decodeMessage(bytes);
    const oneGlue = decodeMessage(truncateResponse(bytes, bytes.length - 1));
    expect(oneGlue.additionals?.map((r) => r.type)).toEqual(["OPT", "A"]);
    expect(oneGlue.answers).toEqual(full.answers);
    const noAnswer = truncateResponse(bytes, 12 + 17 + 11);
    expect(decodeMessage(noAnswer).additionals?.map((r) => r.type)).toEqual(["OPT"]);
    expect(readEdns(noAnswer)?.dnssecOk).toBe(true);
  });

  it("rejects a limit below a header", () => {
    expect(wireError(() => truncateResponse(exchange("txt").response, 11)).code).toBe(
      "bad_argument",
    );
  });
});

describe("buildErrorResponse", () => {
  const rcodes = [Rcode.SERVFAIL, Rcode.REFUSED, Rcode.FORMERR, Rcode.NXDOMAIN];
  const ede = { code: EdeCode.NETWORK_ERROR, text: "upstream unreachable — ünïcode" };

  const edeOf = (p: DnsPacket) => {
    const option = optOf(p)?.options?.find((o) => o.code === 15);
    if (!option?.data) return undefined;
    const data = new Uint8Array(option.data);
    return {
      code: (data[0]! << 8) | data[1]!,
      text: new TextDecoder("utf-8", { fatal: true }).decode(data.subarray(2)),
    };
  };

  it.each(captured)("answers the $name query, keeping ID, flags and question", ({ query }) => {
    const q = decodeMessage(query);
    const qopt = optOf(q);
    for (const rcode of rcodes) {
      for (const options of [{}, { ede }]) {
        const d = decodeMessage(buildErrorResponse(query, rcode, options));
        expect(d.id).toBe(q.id);
        expect(d.questions).toEqual(q.questions);
        expect(d.opcode).toBe(q.opcode);
        expect([d.flag_qr, d.flag_ra, d.flag_aa, d.flag_tc, d.flag_ad]).toEqual([
          true,
          true,
          false,
          false,
          false,
        ]);
        expect([d.flag_rd, d.flag_cd]).toEqual([q.flag_rd, q.flag_cd]);
        expect(rcodeNumber(d.rcode)).toBe(rcode);
        expect(d.answers).toEqual([]);
        expect(d.authorities).toEqual([]);
        const opt = optOf(d);
        if (!qopt) {
          expect(d.additionals).toEqual([]);
          continue;
        }
        expect(opt).toMatchObject({
          udpPayloadSize: 1232,
          ednsVersion: 0,
          extendedRcode: 0,
          flag_do: qopt.flag_do,
        });
        expect(edeOf(d)).toEqual("ede" in options ? ede : undefined);
      }
    }
  });

  it("copies the DO bit from the query", () => {
    const d = decodeMessage(buildErrorResponse(exchange("dnssec-do-a").query, Rcode.SERVFAIL));
    expect(optOf(d)?.flag_do).toBe(true);
  });

  it("puts the upper RCODE bits in the OPT record (BADVERS = 16)", () => {
    const out = buildErrorResponse(exchange("a-kdig-edns").query, Rcode.BADVERS);
    expect(readRcode(out)).toBe(16);
    expect(readHeader(out).rcode).toBe(0);
    const e = wireError(() => buildErrorResponse(exchange("a-udp-noedns").query, Rcode.BADVERS));
    expect(e.code).toBe("bad_argument");
  });

  it("sends an EDE with an empty text, and cuts a long text on a UTF-8 boundary", () => {
    const { query } = exchange("a-kdig-edns");
    expect(
      edeOf(decodeMessage(buildErrorResponse(query, 2, { ede: { code: EdeCode.BLOCKED } }))),
    ).toEqual({
      code: 15,
      text: "",
    });
    const long = "é".repeat(2000);
    const cut = edeOf(
      decodeMessage(buildErrorResponse(query, 2, { ede: { code: 0, text: long } })),
    );
    expect(cut?.text.length).toBeGreaterThan(100);
    expect(long.startsWith(cut!.text)).toBe(true);
  });

  it("answers an unreadable query with a header-only response that keeps the ID", () => {
    const garbage = Uint8Array.from([
      0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xc0, 0xff,
    ]);
    const out = buildErrorResponse(garbage, Rcode.FORMERR, { ede: { code: EdeCode.INVALID_DATA } });
    expect(out.length).toBe(12);
    expect(readHeader(out)).toMatchObject({
      id: 0xabcd,
      qr: true,
      rd: true,
      rcode: 1,
      qdcount: 0,
      arcount: 0,
    });
  });

  it("throws only for a query without a header, or an invalid RCODE or EDE code", () => {
    expect(wireError(() => buildErrorResponse(new Uint8Array(11), 2)).code).toBe("short_message");
    const { query } = exchange("a-kdig-edns");
    expect(wireError(() => buildErrorResponse(query, 4096)).code).toBe("bad_argument");
    expect(wireError(() => buildErrorResponse(query, 2, { ede: { code: 70000 } })).code).toBe(
      "bad_argument",
    );
  });
});

describe("walkRecords", () => {
  it("reports every record with offsets that point at its TTL", () => {
    const { response } = exchange("mx-with-glue");
    const d = decodeMessage(response);
    const seen: { section: string; type: number; ttl: number }[] = [];
    const layout = walkRecords(response, (rr) => {
      const ttl = new DataView(response.buffer, response.byteOffset).getUint32(rr.ttlOffset);
      expect(ttl).toBe(rr.ttl);
      expect(rr.end).toBe(rr.rdataOffset + rr.rdlength);
      seen.push({ section: rr.section, type: rr.type, ttl: rr.ttl });
    });
    expect(layout.end).toBe(response.length);
    const expected = [
      ...(d.answers ?? []).map((r) => ({ section: "answer", r })),
      ...(d.authorities ?? []).map((r) => ({ section: "authority", r })),
      ...(d.additionals ?? []).map((r) => ({ section: "additional", r })),
    ].map(({ section, r }) => ({
      section,
      type: typeNumber(r.type),
      ttl: r.type === "OPT" ? (r.extendedRcode! << 24) | (r.ednsVersion! << 16) | r.flags! : r.ttl,
    }));
    expect(seen).toEqual(expected);
  });
});

describe("walkRecords visitor", () => {
  it("lets errors thrown by the visitor through unchanged", () => {
    const mine = new Error("stop here");
    expect(() =>
      walkRecords(exchange("aaaa").response, () => {
        throw mine;
      }),
    ).toThrow(mine);
  });
});

describe("code points", () => {
  it("names RR types and reads names back, with the RFC 3597 TYPEnnn fallback", () => {
    for (const [name, value] of Object.entries(RrType)) {
      expect(rrTypeName(value)).toBe(name);
      expect(rrTypeFromName(name)).toBe(value);
      expect(rrTypeFromName(name.toLowerCase())).toBe(value);
    }
    expect(rrTypeName(65534)).toBe("TYPE65534");
    expect(rrTypeFromName("TYPE65534")).toBe(65534);
    expect(rrTypeFromName("type28")).toBe(28);
    expect(rrTypeFromName("CAA")).toBe(257);
    expect(rrTypeFromName("TYPE65536")).toBeUndefined();
    expect(rrTypeFromName("NOPE")).toBeUndefined();
    expect(rrTypeFromName("")).toBeUndefined();
  });

  it("has every RFC 8914 info-code 0-24 once", () => {
    expect(Object.values(EdeCode).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 25 }, (_, i) => i),
    );
    expect(EdeCode).toMatchObject({
      STALE_ANSWER: 3,
      BLOCKED: 15,
      NOT_READY: 14,
      NETWORK_ERROR: 23,
    });
  });
});
