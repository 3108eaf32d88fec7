import { describe, expect, it } from "vitest";
import { decodeMessage } from "../../shared/dns/codec.ts";
import { buildQuery, encodeName, NameSyntaxError } from "../../shared/dns/query.ts";
import { readEdns, readHeader, readQuestion } from "../../shared/dns/wire.ts";

describe("query builder", () => {
  it("builds a query that reads back with the asked name, type and flags", () => {
    const q = buildQuery("Example.COM.", 28, { id: 0x1234, checkingDisabled: true });
    const h = readHeader(q);
    expect(h).toMatchObject({ id: 0x1234, qr: false, rd: true, cd: true, qdcount: 1, arcount: 0 });
    expect(readQuestion(q)).toMatchObject({ name: "example.com.", type: 28, class: 1 });
    expect(decodeMessage(q).questions?.[0]).toMatchObject({ name: "Example.COM", type: "AAAA" });
  });

  it("adds an OPT record with the DO bit when asked", () => {
    const q = buildQuery("example.org.", 1, { dnssecOk: true });
    expect(readEdns(q)).toMatchObject({ udpSize: 1232, dnssecOk: true, version: 0 });
  });

  it("encodes the root and escaped labels", () => {
    expect(encodeName(".")).toEqual(Uint8Array.from([0]));
    expect(encodeName("a\\.b.c.")).toEqual(Uint8Array.from([3, 97, 46, 98, 1, 99, 0]));
    expect(encodeName("\\000x.")).toEqual(Uint8Array.from([2, 0, 120, 0]));
  });

  it("rejects empty labels, long labels and long names", () => {
    expect(() => encodeName("a..b.")).toThrow(NameSyntaxError);
    expect(() => encodeName(`${"a".repeat(64)}.`)).toThrow(NameSyntaxError);
    expect(() => encodeName(`${"a.".repeat(128)}`)).toThrow(NameSyntaxError);
    expect(() => encodeName("\\999.")).toThrow(NameSyntaxError);
  });
});
