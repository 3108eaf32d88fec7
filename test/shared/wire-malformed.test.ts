import { describe, expect, it } from "vitest";
import { decodeMessage } from "../../shared/dns/codec.ts";
import {
  ageTtls,
  buildErrorResponse,
  DnsWireError,
  type DnsWireErrorCode,
  minTtl,
  Rcode,
  readEdns,
  readHeader,
  readId,
  readQuestion,
  readRcode,
  sameQuestion,
  truncateResponse,
  walkRecords,
} from "../../shared/dns/wire.ts";
import { type MalformedCase, malformed } from "../fixtures/malformed/corpus.ts";

const CODES: readonly DnsWireErrorCode[] = [
  "short_message",
  "too_large",
  "truncated_name",
  "label_too_long",
  "name_too_long",
  "pointer_loop",
  "forward_pointer",
  "bad_label_type",
  "truncated_record",
  "count_mismatch",
  "bad_rdata",
  "bad_opt",
  "no_question",
  "bad_argument",
  "decode_failed",
  "encode_failed",
  "malformed",
];

type Outcome = { ok: true; value: unknown } | { ok: false; code: DnsWireErrorCode };

/** Runs a helper; a DnsWireError becomes its code, anything else fails the test. */
function outcome(fn: () => unknown): Outcome {
  try {
    return { ok: true, value: fn() };
  } catch (error) {
    expect(error).toBeInstanceOf(DnsWireError);
    const code = (error as DnsWireError).code;
    expect(CODES).toContain(code);
    expect(typeof (error as DnsWireError).offset).toBe("number");
    return { ok: false, code };
  }
}

const codeOf = (o: Outcome) => (o.ok ? "ok" : o.code);

const helpers: [string, (msg: Uint8Array) => unknown][] = [
  ["readHeader", readHeader],
  ["readId", readId],
  ["readQuestion", readQuestion],
  ["sameQuestion", (m) => sameQuestion(m, m)],
  ["readEdns", readEdns],
  ["readRcode", readRcode],
  ["walkRecords", (m) => walkRecords(m)],
  [
    "buildErrorResponse",
    (m) => buildErrorResponse(m, Rcode.SERVFAIL, { ede: { code: 0, text: "x" } }),
  ],
  ["truncateResponse 512", (m) => truncateResponse(m, 512)],
  ["truncateResponse 12", (m) => truncateResponse(m, 12)],
  ["minTtl", minTtl],
  ["ageTtls", (m) => ageTtls(m, 30)],
  ["decodeMessage", decodeMessage],
];

describe("malformed corpus", () => {
  it("has at least 50 cases, each saying what is wrong", () => {
    expect(malformed.length).toBeGreaterThanOrEqual(50);
    for (const c of malformed) expect(c.problem.length).toBeGreaterThan(5);
    const sizes = malformed.map((c) => c.bytes.length);
    for (const size of [0, 11, 65535, 65536]) expect(sizes).toContain(size);
  });
});

describe.each(malformed)("$name: $problem", (c: MalformedCase) => {
  it("every helper returns or throws a DnsWireError, nothing else", () => {
    const before = c.bytes.slice();
    for (const [, helper] of helpers) outcome(() => helper(c.bytes));
    expect(c.bytes).toEqual(before);
  });

  it(`whole-message readers report ${c.walk}`, () => {
    expect(codeOf(outcome(() => walkRecords(c.bytes)))).toBe(c.walk);
    if (c.walk !== "ok") {
      for (const fn of [readRcode, minTtl, (m: Uint8Array) => ageTtls(m, 1), readEdns]) {
        expect(codeOf(outcome(() => fn(c.bytes)))).toBe(c.walk);
      }
      expect(codeOf(outcome(() => decodeMessage(c.bytes)))).toBe("decode_failed");
    }
  });

  it("sameQuestion never throws", () => {
    expect(typeof sameQuestion(c.bytes, c.bytes)).toBe("boolean");
  });

  it("buildErrorResponse answers anything with a header, keeping the ID", () => {
    const o = outcome(() => buildErrorResponse(c.bytes, Rcode.FORMERR));
    if (c.bytes.length < 12) {
      expect(codeOf(o)).toBe("short_message");
      return;
    }
    expect(o.ok).toBe(true);
    const out = (o as { value: Uint8Array }).value;
    const header = readHeader(out);
    expect(header.id).toBe((c.bytes[0]! << 8) | c.bytes[1]!);
    expect(header).toMatchObject({ qr: true, rcode: Rcode.FORMERR, ancount: 0, nscount: 0 });
    const question = outcome(() => readQuestion(c.bytes));
    expect(header.qdcount).toBe(question.ok ? 1 : 0);
    if (!question.ok) expect(out.length).toBe(12);
    else expect(readQuestion(out).name).toBe((question.value as { name: string }).name);
  });

  it("truncateResponse output fits its limit", () => {
    for (const limit of [12, 100, 512]) {
      const o = outcome(() => truncateResponse(c.bytes, limit));
      if (o.ok) {
        const out = o.value as Uint8Array;
        expect(out === c.bytes || out.length <= limit).toBe(true);
      }
    }
  });

  if (c.edns !== undefined) {
    it(`readEdns: ${c.edns}`, () => {
      const o = outcome(() => readEdns(c.bytes));
      if (c.edns === "none") expect(o).toEqual({ ok: true, value: undefined });
      else expect(codeOf(o)).toBe(c.edns);
    });
  }
  if (c.rcode !== undefined) {
    it(`readRcode: ${c.rcode}`, () => {
      const o = outcome(() => readRcode(c.bytes));
      if (typeof c.rcode === "number") expect(o).toEqual({ ok: true, value: c.rcode });
      else expect(codeOf(o)).toBe(c.rcode);
    });
  }
  if (c.ttl !== undefined) {
    it(`minTtl and ageTtls: ${c.ttl}`, () => {
      expect(codeOf(outcome(() => minTtl(c.bytes)))).toBe(c.ttl);
      expect(codeOf(outcome(() => ageTtls(c.bytes, 5)))).toBe(c.ttl);
    });
  }
  if (c.question !== undefined) {
    it(`readQuestion: ${c.question}`, () => {
      const o = outcome(() => readQuestion(c.bytes));
      if (o.ok) expect((o.value as { name: string }).name).toBe(c.question);
      else expect(o.code).toBe(c.question);
    });
  }
  if (c.decode !== undefined) {
    it(`decodeMessage: ${c.decode}`, () => {
      expect(codeOf(outcome(() => decodeMessage(c.bytes)))).toBe(c.decode);
    });
  }
});
