import { describe, expect, it } from "vitest";
import { type DnsPacket, decodeMessage, encodeMessage } from "../../shared/dns/codec.ts";
import {
  DnsWireError,
  readEdns,
  readHeader,
  readQuestion,
  walkRecords,
} from "../../shared/dns/wire.ts";
import { malformed } from "../fixtures/malformed/corpus.ts";
import { captured, exchange } from "../fixtures/packets/captured.ts";

const wireError = (fn: () => unknown): DnsWireError => {
  try {
    fn();
  } catch (error) {
    if (error instanceof DnsWireError) return error;
    throw error;
  }
  throw new Error("expected a DnsWireError, got a result");
};

// Byte arrays compared by content whatever their class (Buffer or Uint8Array).
const normalise = (value: unknown): unknown => {
  if (value instanceof Uint8Array) return Array.from(value);
  if (Array.isArray(value)) return value.map(normalise);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalise(v)]));
  }
  return value;
};

describe("decodeMessage", () => {
  it.each(captured)(
    "decodes the captured $name query and response",
    ({ query, response, qname }) => {
      for (const bytes of [query, response]) {
        const p = decodeMessage(bytes);
        expect(p.id).toBe(readHeader(bytes).id);
      }
      const q = decodeMessage(query).questions?.[0];
      expect(`${q?.name.toLowerCase()}.`.replace(/^\.\.$/, ".")).toBe(
        qname.toLowerCase().replace(/\\\./g, "."),
      );
    },
  );

  it("decodes records of many types from real servers", () => {
    const types = new Set(
      captured.flatMap(({ response }) => {
        const p = decodeMessage(response);
        return [...(p.answers ?? []), ...(p.authorities ?? []), ...(p.additionals ?? [])].map(
          (r) => r.type,
        );
      }),
    );
    for (const t of [
      "A",
      "AAAA",
      "CNAME",
      "MX",
      "NS",
      "SOA",
      "TXT",
      "SRV",
      "CAA",
      "RRSIG",
      "DNSKEY",
      "OPT",
    ]) {
      expect(types).toContain(t);
    }
    const txt = decodeMessage(exchange("txt").response).answers?.[0]?.data as Uint8Array[];
    expect(txt.map((b) => new TextDecoder().decode(b))).toEqual(["hello world", "second string"]);
  });

  it("neither changes its input nor shares memory with it", () => {
    const bytes = exchange("txt").response.slice();
    const before = bytes.slice();
    const p = decodeMessage(bytes);
    expect(bytes).toEqual(before);
    bytes.fill(0);
    const txt = p.answers?.[0]?.data as Uint8Array[];
    expect(new TextDecoder().decode(txt[0])).toBe("hello world");
  });

  it("throws DnsWireError decode_failed for every malformed message the walker rejects", () => {
    for (const c of malformed.filter((m) => m.walk !== "ok")) {
      expect(wireError(() => decodeMessage(c.bytes)).code).toBe("decode_failed");
    }
  });

  it("rejects RDATA whose length disagrees with its contents instead of misreading what follows", () => {
    const bytes = encodeMessage({
      type: "response",
      questions: [{ name: "example.com", type: "A" }],
      answers: [
        { name: "example.com", type: "A", ttl: 60, data: "192.0.2.1" },
        { name: "example.com", type: "A", ttl: 60, data: "192.0.2.2" },
      ],
    });
    // First A record: RDLENGTH 4 -> 2 (the walker still sees two records inside the message).
    const broken = bytes.slice(0, bytes.length - 2);
    const rdlength = 12 + 17 + 13 + 8;
    expect(broken[rdlength + 1]).toBe(4);
    broken[rdlength + 1] = 2;
    broken.set(bytes.subarray(rdlength + 4), rdlength + 2);
    expect(() => walkRecords(broken)).not.toThrow();
    const e = wireError(() => decodeMessage(broken));
    expect(e.code).toBe("decode_failed");
    expect(e.message).toMatch(/cannot decode/);
  });
});

describe("encodeMessage", () => {
  const packet = (): DnsPacket => ({
    type: "response",
    id: 4242,
    flags: 0x0180,
    questions: [{ name: "Example.com", type: "TXT" }],
    answers: [
      {
        name: "example.com",
        type: "TXT",
        ttl: 300,
        data: ["plain string", new Uint8Array([0, 1, 2, 255])],
      },
      {
        name: "example.com",
        type: "MX",
        ttl: 60,
        data: { preference: 10, exchange: "mail.example.com" },
      },
    ],
    additionals: [
      {
        name: ".",
        type: "OPT",
        udpPayloadSize: 1232,
        flags: 0x8000,
        options: [{ code: 15, data: Uint8Array.from([0, 18, 0x68, 0x69]) }],
      },
    ],
  });

  it("returns a plain Uint8Array that decodes back to the packet", () => {
    const out = encodeMessage(packet());
    expect(Object.getPrototypeOf(out)).toBe(Uint8Array.prototype);
    const d = decodeMessage(out);
    expect(d.id).toBe(4242);
    expect(readQuestion(out)).toMatchObject({ name: "example.com.", type: 16 });
    expect(normalise(d.answers?.[0]?.data)).toEqual([
      Array.from(new TextEncoder().encode("plain string")),
      [0, 1, 2, 255],
    ]);
    expect(d.answers?.[1]?.data).toEqual({ preference: 10, exchange: "mail.example.com" });
    expect(readEdns(out)).toMatchObject({
      dnssecOk: true,
      options: [{ code: 15, data: Uint8Array.from([0, 18, 0x68, 0x69]) }],
    });
  });

  it("does not modify the packet it is given", () => {
    const input = packet();
    const { questions, answers, additionals } = input;
    const snapshot = normalise(input);
    encodeMessage(input);
    expect(normalise(input)).toEqual(snapshot);
    expect(input.authorities).toBeUndefined();
    expect(input.questions).toBe(questions);
    expect(input.answers).toBe(answers);
    expect(input.additionals).toBe(additionals);
    expect(typeof (answers![0]!.data as unknown[])[0]).toBe("string");
  });

  it.each(captured)("re-encodes the decoded $name response to the same message", ({ response }) => {
    const d = decodeMessage(response);
    const again = decodeMessage(encodeMessage(d));
    expect(normalise(again)).toEqual(normalise(d));
  });

  it("throws encode_failed for names the wire cannot carry, never corrupt bytes", () => {
    const bad = [
      { type: "response" as const, questions: [{ name: `${"a".repeat(64)}.example`, type: "A" }] },
      { type: "response" as const, questions: [{ name: "a..example", type: "A" }] },
      {
        type: "response" as const,
        questions: [{ name: `${"abcdefgh.".repeat(32)}com`, type: "A" }],
      },
      {
        type: "response" as const,
        answers: [{ name: "x.example", type: "A", data: "not an address" }],
      },
      { type: "response" as const, answers: [{ name: "x.example", type: "A", data: "1.2.3.256" }] },
      {
        type: "response" as const,
        answers: [{ name: "x.example", type: "AAAA", data: "2001:db8::1::2" }],
      },
      {
        type: "response" as const,
        answers: [{ name: "x.example", type: "AAAA", data: "192.0.2.1" }],
      },
      { type: "response" as const, answers: [{ name: "x.example", type: "MX", data: 7 }] },
    ];
    for (const p of bad) expect(wireError(() => encodeMessage(p)).code).toBe("encode_failed");
  });

  it("accepts the address forms the codec can write", () => {
    const answers = ["192.0.2.1", "0.0.0.0", "255.255.255.255"].map((data) => ({
      name: "a.example",
      type: "A",
      data,
    }));
    const six = ["::", "::1", "2001:db8::1", "2001:DB8:0:0:0:0:0:1"].map((data) => ({
      name: "a.example",
      type: "AAAA",
      data,
    }));
    const d = decodeMessage(encodeMessage({ type: "response", answers: [...answers, ...six] }));
    expect(d.answers?.map((a) => a.data)).toEqual([
      "192.0.2.1",
      "0.0.0.0",
      "255.255.255.255",
      "::",
      "::1",
      "2001:db8::1",
      "2001:db8::1",
    ]);
  });

  it("throws encode_failed for a message over 65,535 bytes", () => {
    const big = "x".repeat(250);
    const answers = Array.from({ length: 300 }, () => ({
      name: "example.com",
      type: "TXT",
      data: [big],
    }));
    expect(wireError(() => encodeMessage({ type: "response", answers })).code).toBe(
      "encode_failed",
    );
  });
});
