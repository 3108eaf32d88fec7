import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DomainNameError,
  ExceptFileError,
  normalizeDomainName,
  parseExceptFile,
} from "../../shared/config/except.ts";
import { createSuffixSet } from "../../shared/policy/suffix-set.ts";

describe("suffix set (except lists, block and allow lists, rules)", () => {
  const except = createSuffixSet(["corp.example."]);

  it("matches the name itself and names below it", () => {
    expect(except.matches("corp.example.")).toBe(true);
    expect(except.matches("a.corp.example.")).toBe(true);
    expect(except.matches("b.a.corp.example.")).toBe(true);
  });

  it("matches on label boundaries only", () => {
    expect(except.matches("xcorp.example.")).toBe(false);
    expect(except.matches("a.xcorp.example.")).toBe(false);
    expect(except.matches("example.")).toBe(false);
    expect(except.matches("corp.example.net.")).toBe(false);
  });

  it("ignores case and an absent trailing dot on either side", () => {
    expect(except.matches("A.Corp.EXAMPLE")).toBe(true);
    expect(createSuffixSet(["Corp.Example"]).matches("a.corp.example.")).toBe(true);
    expect(createSuffixSet(["corp.example"]).matches("corp.example")).toBe(true);
  });

  it("lets the root cover every name", () => {
    const all = createSuffixSet(["."]);
    expect(all.matches("anything.example.")).toBe(true);
    expect(all.matches(".")).toBe(true);
  });

  it("matches nothing when empty", () => {
    expect(createSuffixSet([]).matches("example.")).toBe(false);
    expect(createSuffixSet([]).matches(".")).toBe(false);
  });

  it("does not split a label at an escaped dot", () => {
    const set = createSuffixSet(["b.example."]);
    expect(set.matches("a.b.example.")).toBe(true);
    expect(set.matches("a\\.b.example.")).toBe(false);
  });

  it("agrees with a naive suffix check on random names", () => {
    const label = fc.constantFrom("a", "b", "corp", "xcorp", "Example", "c-d");
    const name = fc.array(label, { minLength: 1, maxLength: 4 }).map((ls) => `${ls.join(".")}.`);
    fc.assert(
      fc.property(fc.array(name, { maxLength: 4 }), name, (names, qname) => {
        const q = qname.toLowerCase();
        const naive = names.some((n) => {
          const s = n.toLowerCase();
          return q === s || q.endsWith(`.${s}`);
        });
        expect(createSuffixSet(names).matches(qname)).toBe(naive);
      }),
    );
  });
});

describe("normalizeDomainName", () => {
  it("lower-cases and adds the trailing dot", () => {
    expect(normalizeDomainName("Corp.Example")).toBe("corp.example.");
    expect(normalizeDomainName("_dns.resolver.arpa.")).toBe("_dns.resolver.arpa.");
    expect(normalizeDomainName(".")).toBe(".");
  });

  it.each([
    ["*.example.com", "wildcards (*) are not supported; a name already covers its subdomains"],
    ["a..b", "empty label (two dots in a row, or a leading dot)"],
    [".example", "empty label (two dots in a row, or a leading dot)"],
    ["", "empty name"],
    ["foo bar", "contains whitespace"],
    [
      "bücher.example",
      "contains non-ASCII characters; write internationalized names in their xn-- form",
    ],
    ["a/b.example", 'label "a/b" may hold only letters, digits, "-" and "_"'],
    [`${"a".repeat(64)}.example`, `label "${"a".repeat(20)}..." is longer than 63 characters`],
    [Array.from({ length: 64 }, () => "abc").join("."), "longer than 253 characters"],
  ])("rejects %j", (text, why) => {
    expect(() => normalizeDomainName(text)).toThrow(
      new DomainNameError(`${JSON.stringify(text)} is not a domain name: ${why}`),
    );
  });

  it("accepts 63-character labels and 253-character names", () => {
    expect(normalizeDomainName(`${"a".repeat(63)}.example`)).toBe(`${"a".repeat(63)}.example.`);
    const long = `${Array.from({ length: 63 }, () => "abc").join(".")}.a`; // 253 characters
    expect(long).toHaveLength(253);
    expect(normalizeDomainName(long)).toBe(`${long}.`);
  });
});

describe("parseExceptFile", () => {
  it("reads one name per line with comments, blank lines and CRLF", () => {
    const text =
      "# internal names\r\ncorp.example\r\n\r\n  Printer.LAN.  # the printer\n#last\nhome.arpa";
    expect(parseExceptFile(text, "except.txt")).toEqual([
      "corp.example.",
      "printer.lan.",
      "home.arpa.",
    ]);
  });

  it("accepts an empty file and a byte-order mark", () => {
    expect(parseExceptFile("", "x")).toEqual([]);
    expect(parseExceptFile("\uFEFFcorp.example\n", "x")).toEqual(["corp.example."]);
  });

  it("names the file and line of a bad entry", () => {
    const text = "corp.example\n# ok\nnot a name # trailing\n";
    try {
      parseExceptFile(text, "/etc/doh-edge/except.txt");
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ExceptFileError);
      const e = error as ExceptFileError;
      expect(e.message).toBe('/etc/doh-edge/except.txt:3: not a domain name: "not a name"');
      expect(e.code).toBe("bad_except_file");
      expect(e.file).toBe("/etc/doh-edge/except.txt");
      expect(e.line).toBe(3);
    }
  });

  it("counts CRLF lines like LF lines", () => {
    expect(() => parseExceptFile("a.example\r\nb.example\r\n*.c.example\r\n", "f")).toThrow(
      'f:3: not a domain name: "*.c.example"',
    );
  });
});
