import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bracketHost,
  CidrError,
  cidrContains,
  formatCidr,
  formatHostPort,
  formatIp,
  IpAddressError,
  isLoopbackOrPrivate,
  normalizeIp,
  parseCidr,
  parseIp,
  parseIpv4,
  parseIpv6,
} from "../../shared/config/ip.ts";

const bytes = (...values: number[]) => Uint8Array.from(values);
const v6 = (text: string) => {
  const parsed = parseIpv6(text);
  if (!parsed) throw new Error(`test setup: ${text} did not parse`);
  return Array.from(parsed);
};

describe("IPv4", () => {
  it("parses a dotted quad", () => {
    expect(parseIpv4("192.168.1.20")).toEqual(bytes(192, 168, 1, 20));
    expect(parseIpv4("0.0.0.0")).toEqual(bytes(0, 0, 0, 0));
    expect(parseIpv4("255.255.255.255")).toEqual(bytes(255, 255, 255, 255));
  });

  it.each([
    "256.1.1.1",
    "1.2.3",
    "1.2.3.4.5",
    "1..3.4",
    "01.2.3.4",
    "1.2.3.4 ",
    "a.b.c.d",
    "",
    "1.2.3.-4",
  ])("rejects %j", (text) => {
    expect(parseIpv4(text)).toBeUndefined();
  });

  it("explains leading zeros", () => {
    expect(() => parseIp("010.0.0.1")).toThrow(/leading zeros/);
  });
});

describe("IPv6", () => {
  it("parses every textual form", () => {
    expect(v6("::")).toEqual(new Array(16).fill(0));
    expect(v6("::1")).toEqual([...new Array(15).fill(0), 1]);
    expect(v6("1::")).toEqual([0, 1, ...new Array(14).fill(0)]);
    expect(v6("2001:db8::1")).toEqual(v6("2001:0db8:0000:0000:0000:0000:0000:0001"));
    expect(v6("2001:DB8::A")).toEqual(v6("2001:db8::a"));
    expect(v6("1:2:3:4:5:6:7::")).toEqual([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 0]);
    expect(v6("::2:3:4:5:6:7:8")).toEqual([0, 0, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]);
  });

  it("parses an embedded IPv4 address in the last 32 bits", () => {
    expect(v6("::ffff:10.0.0.1")).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 10, 0, 0, 1]);
    expect(v6("64:ff9b::192.0.2.33").slice(12)).toEqual([192, 0, 2, 33]);
    expect(v6("1:2:3:4:5:6:1.2.3.4").slice(12)).toEqual([1, 2, 3, 4]);
  });

  it.each([
    ":::",
    "1::2::3",
    "12345::",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7",
    ":1::",
    "1::2:",
    "1.2.3.4::",
    "g::1",
    "::1.2.3",
    "1:2:3:4:5:6:7:1.2.3.4",
    "",
  ])("rejects %j", (text) => {
    expect(parseIpv6(text)).toBeUndefined();
  });

  it("rejects zone ids and says so", () => {
    expect(parseIpv6("fe80::1%eth0")).toBeUndefined();
    expect(() => parseIp("fe80::1%eth0")).toThrow(
      new IpAddressError(
        '"fe80::1%eth0": zone ids (%eth0) are not supported; write the address without it',
      ),
    );
  });

  it("formats canonically (RFC 5952)", () => {
    const f = (text: string) => formatIp(parseIp(text));
    expect(f("2001:0DB8:0000:0000:0000:0000:0000:0001")).toBe("2001:db8::1");
    expect(f("2001:db8:0:1:0:0:0:1")).toBe("2001:db8:0:1::1");
    expect(f("2001:db8:0:0:1:0:0:1")).toBe("2001:db8::1:0:0:1");
    expect(f("2001:db8:0:1:1:1:1:1")).toBe("2001:db8:0:1:1:1:1:1");
    expect(f("0:0:0:0:0:0:0:0")).toBe("::");
    expect(f("::ffff:0a00:0001")).toBe("::ffff:10.0.0.1");
  });

  it("round-trips any 16 bytes through format and parse", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (address) => {
        const text = formatIp({ family: 6, bytes: address });
        expect(parseIpv6(text)).toEqual(address);
      }),
    );
  });
});

describe("normalizeIp", () => {
  it("folds IPv4-mapped IPv6 to IPv4", () => {
    const folded = normalizeIp(parseIp("::ffff:10.0.0.1"));
    expect(folded.family).toBe(4);
    expect(formatIp(folded)).toBe("10.0.0.1");
  });

  it("leaves other addresses alone", () => {
    expect(formatIp(normalizeIp(parseIp("2001:db8::1")))).toBe("2001:db8::1");
    expect(normalizeIp(parseIp("::10.0.0.1")).family).toBe(6);
    expect(formatIp(normalizeIp(parseIp("10.0.0.1")))).toBe("10.0.0.1");
  });
});

describe("CIDR", () => {
  it("parses IPv4 and IPv6 blocks", () => {
    expect(formatCidr(parseCidr("10.0.0.0/8"))).toBe("10.0.0.0/8");
    expect(formatCidr(parseCidr("fc00::/7"))).toBe("fc00::/7");
    expect(parseCidr("0.0.0.0/0").prefix).toBe(0);
  });

  it("treats a bare address as a host block", () => {
    expect(parseCidr("192.168.1.5").prefix).toBe(32);
    expect(parseCidr("::1").prefix).toBe(128);
  });

  it("turns an IPv4-mapped block into the IPv4 block", () => {
    const block = parseCidr("::ffff:10.0.0.0/104");
    expect(block.family).toBe(4);
    expect(formatCidr(block)).toBe("10.0.0.0/8");
  });

  it.each([
    ["10.0.0.1/8", '"10.0.0.1/8": host bits are set after /8; did you mean 10.0.0.0/8?'],
    ["10.0.0.0/33", '"10.0.0.0/33": prefix length must be a number from 0 to 32'],
    ["fc00::/129", '"fc00::/129": prefix length must be a number from 0 to 128'],
    ["10.0.0.0/", '"10.0.0.0/": prefix length must be a number from 0 to 32'],
    ["10.0.0.0/08", '"10.0.0.0/08": prefix length must be a number from 0 to 32'],
    [
      "10.0.0/8",
      '"10.0.0/8": network address "10.0.0": an IPv4 address is four decimal numbers 0-255 separated by dots',
    ],
    ["lan", '"lan": not an IPv4 or IPv6 address'],
  ])("rejects %j", (text, message) => {
    expect(() => parseCidr(text)).toThrow(new CidrError(message));
  });

  it("matches addresses inside the block only", () => {
    const block = parseCidr("172.16.0.0/12");
    expect(cidrContains(block, parseIp("172.16.0.1"))).toBe(true);
    expect(cidrContains(block, parseIp("172.31.255.255"))).toBe(true);
    expect(cidrContains(block, parseIp("172.32.0.0"))).toBe(false);
    expect(cidrContains(block, parseIp("172.15.255.255"))).toBe(false);
    expect(cidrContains(parseCidr("fc00::/7"), parseIp("fd12::1"))).toBe(true);
    expect(cidrContains(parseCidr("fc00::/7"), parseIp("fe00::1"))).toBe(false);
    expect(cidrContains(parseCidr("0.0.0.0/0"), parseIp("8.8.8.8"))).toBe(true);
  });

  it("never matches across families", () => {
    expect(cidrContains(parseCidr("0.0.0.0/0"), parseIp("2001:db8::1"))).toBe(false);
    expect(cidrContains(parseCidr("::/0"), parseIp("10.0.0.1"))).toBe(false);
  });

  it("sees an IPv4-mapped client as the IPv4 client it is (no ACL bypass)", () => {
    const mapped = parseIp("::ffff:10.0.0.1");
    expect(cidrContains(parseCidr("10.0.0.0/8"), mapped)).toBe(true);
    expect(cidrContains(parseCidr("::/0"), mapped)).toBe(false);
  });

  it("contains an address in the block made from its own prefix, and not one differing inside the prefix", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        fc.integer({ min: 1, max: 32 }),
        (address, prefix) => {
          const whole = address.reduce((acc, b) => acc * 256 + b, 0);
          const network = prefix === 0 ? 0 : whole - (whole % 2 ** (32 - prefix));
          const netBytes = Uint8Array.from(
            [24, 16, 8, 0].map((s) => Math.floor(network / 2 ** s) % 256),
          );
          const block = parseCidr(`${formatIp({ family: 4, bytes: netBytes })}/${prefix}`);
          expect(cidrContains(block, { family: 4, bytes: address })).toBe(true);
          const flipped = address.slice();
          const bit = prefix - 1;
          flipped[bit >> 3] = flipped[bit >> 3]! ^ (0x80 >> (bit & 7));
          expect(cidrContains(block, { family: 4, bytes: flipped })).toBe(false);
        },
      ),
    );
  });
});

describe("isLoopbackOrPrivate", () => {
  it.each([
    "127.0.0.1",
    "10.1.2.3",
    "172.20.0.1",
    "192.168.0.1",
    "::1",
    "fd00::1",
    "fe80::1",
    "::ffff:192.168.1.1",
  ])("%s is private", (text) => {
    expect(isLoopbackOrPrivate(parseIp(text))).toBe(true);
  });

  it.each(["8.8.8.8", "172.32.0.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"])(
    "%s is public",
    (text) => {
      expect(isLoopbackOrPrivate(parseIp(text))).toBe(false);
    },
  );
});

describe("bracketHost and formatHostPort", () => {
  it("brackets IPv6 literals only, as URLs and host:port strings write them", () => {
    expect(bracketHost("::1")).toBe("[::1]");
    expect(bracketHost("2001:db8::53")).toBe("[2001:db8::53]");
    expect(bracketHost("127.0.0.1")).toBe("127.0.0.1");
    expect(bracketHost("dns.google")).toBe("dns.google");
    expect(formatHostPort({ host: "::1", port: 853 })).toBe("[::1]:853");
    expect(formatHostPort({ host: "192.0.2.1", port: 53 })).toBe("192.0.2.1:53");
  });

  it("writes what URL parsing reads back", () => {
    for (const host of ["::1", "fe80::1:2", "10.0.0.1", "relay.lan"]) {
      const url = new URL(`https://${formatHostPort({ host, port: 8443 })}/dns-query`);
      expect(url.port).toBe("8443");
      expect(url.hostname.replace(/^\[|\]$/g, "")).toBe(host);
    }
  });
});
