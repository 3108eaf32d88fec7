import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  HostPortError,
  parseHostPort,
  parseUpstreamUrl,
  plainHttpWarning,
  UpstreamUrlError,
} from "../../shared/config/upstream-url.ts";

describe("parseUpstreamUrl: every form README `upstreams[]` lists, with default ports", () => {
  it.each([
    ["1.2.3.4", "udp", "1.2.3.4", "ipv4", 53],
    ["1.2.3.4:5353", "udp", "1.2.3.4", "ipv4", 5353],
    ["[2001:db8::1]:53", "udp", "2001:db8::1", "ipv6", 53],
    ["[2001:db8::1]:5353", "udp", "2001:db8::1", "ipv6", 5353],
    ["[2001:db8::1]", "udp", "2001:db8::1", "ipv6", 53],
    ["2001:db8::1", "udp", "2001:db8::1", "ipv6", 53],
    ["::1", "udp", "::1", "ipv6", 53],
    ["dns.example", "udp", "dns.example", "name", 53],
    ["udp://dns.example", "udp", "dns.example", "name", 53],
    ["udp://10.0.0.1:1053", "udp", "10.0.0.1", "ipv4", 1053],
    ["tcp://dns.example", "tcp", "dns.example", "name", 53],
    ["tcp://[2003::1]:53", "tcp", "2003::1", "ipv6", 53],
    ["tls://9.9.9.9", "tls", "9.9.9.9", "ipv4", 853],
    ["tls://dns.quad9.net:8853", "tls", "dns.quad9.net", "name", 8853],
    ["https://cloudflare-dns.com/dns-query", "https", "cloudflare-dns.com", "name", 443],
    ["http://127.0.0.1:8080/dns-query", "http", "127.0.0.1", "ipv4", 8080],
    ["http://relay.lan/dns-query", "http", "relay.lan", "name", 80],
    ["h3://cloudflare-dns.com/dns-query", "h3", "cloudflare-dns.com", "name", 443],
    ["quic://dns.adguard-dns.com", "quic", "dns.adguard-dns.com", "name", 853],
    ["quic://[2a10:50c0::ad1:ff]:784", "quic", "2a10:50c0::ad1:ff", "ipv6", 784],
  ])("%s", (text, protocol, host, hostKind, port) => {
    const url = parseUpstreamUrl(text);
    expect(url).toMatchObject({ protocol, host, hostKind, port });
  });

  it("gives DoH upstreams a path, /dns-query by default", () => {
    expect(parseUpstreamUrl("https://dns.google").path).toBe("/dns-query");
    expect(parseUpstreamUrl("h3://dns.google").path).toBe("/dns-query");
    expect(parseUpstreamUrl("http://[::1]:8080").path).toBe("/dns-query");
    expect(parseUpstreamUrl("https://dns.nextdns.io/abc123").path).toBe("/abc123");
    expect(parseUpstreamUrl("https://dns.example/q?x=1").path).toBe("/q?x=1");
    expect(parseUpstreamUrl("https://dns.example?x=1").path).toBe("/?x=1");
  });

  it("gives other protocols no path", () => {
    expect(parseUpstreamUrl("tls://9.9.9.9").path).toBeUndefined();
    expect(parseUpstreamUrl("quic://dns.example/").path).toBeUndefined();
    expect(parseUpstreamUrl("1.2.3.4").path).toBeUndefined();
  });

  it.each([
    ["HTTPS://DNS.Google:443/dns-query", "https://dns.google/dns-query"],
    ["https://dns.google", "https://dns.google/dns-query"],
    ["https://dns.google:8443/x", "https://dns.google:8443/x"],
    ["tls://[2001:DB8:0::1]:853", "tls://[2001:db8::1]"],
    ["1.2.3.4", "udp://1.2.3.4"],
    ["1.2.3.4:5353", "udp://1.2.3.4:5353"],
    ["2001:0db8::0001", "udp://[2001:db8::1]"],
    ["dns.example.", "udp://dns.example"],
    ["QUIC://Dns.Example:853", "quic://dns.example"],
  ])("normalizes %s to %s", (text, href) => {
    expect(parseUpstreamUrl(text).href).toBe(href);
  });
});

describe("parseUpstreamUrl: errors name the bad part", () => {
  it.each([
    ["quic://host:99999", "bad_port", "quic://host:99999: port out of range"],
    ["udp://host:0", "bad_port", "udp://host:0: port out of range"],
    ["tls://host:abc", "bad_port", 'tls://host:abc: invalid port "abc"'],
    ["1.2.3.4:", "bad_port", '1.2.3.4:: missing port after ":"'],
    [
      "ftp://x",
      "unsupported_scheme",
      'ftp://x: unsupported scheme "ftp" (use udp, tcp, tls, https, http, h3 or quic)',
    ],
    [
      "https:/dns.google",
      "unsupported_scheme",
      'https:/dns.google: write the scheme as "https://"',
    ],
    ["tls://", "missing_host", "tls://: missing host"],
    ["https:///dns-query", "missing_host", "https:///dns-query: missing host"],
    ["tcp://:53", "missing_host", "tcp://:53: missing host"],
    [
      "udp://2001:db8::1",
      "bad_host",
      "udp://2001:db8::1: an IPv6 address in a URL goes in brackets: udp://[address]:port",
    ],
    ["fe80::1%eth0", "bad_host", "fe80::1%eth0: zone ids (%eth0) are not supported"],
    [
      "tls://[fe80::1%25eth0]",
      "bad_host",
      "tls://[fe80::1%25eth0]: zone ids (%25eth0) are not supported",
    ],
    ["[2001:db8::1", "bad_host", '[2001:db8::1: missing "]" after the IPv6 address'],
    ["[1.2.3.4]:53", "bad_host", '[1.2.3.4]:53: "1.2.3.4" is not a valid IPv6 address'],
    ["1.2.3.256", "bad_host", '1.2.3.256: "1.2.3.256" is not a valid IPv4 address'],
    [
      "udp://-bad-.example",
      "bad_host",
      'udp://-bad-.example: "-bad-.example" is not a valid host name',
    ],
    [
      "tls://9.9.9.9/dns-query",
      "unexpected_path",
      "tls://9.9.9.9/dns-query: tls:// takes no path (only https, http and h3 do)",
    ],
    [
      "dns.google/dns-query",
      "unexpected_path",
      "dns.google/dns-query: a bare address is plain DNS and takes no path; for DoH write https://host/path",
    ],
    [
      "https://dns.example/dns-query{?dns}",
      "bad_path",
      "https://dns.example/dns-query{?dns}: write the path without a URI template ({?dns}); GET adds ?dns=",
    ],
    ["https://dns.example/a%zz", "bad_path", "https://dns.example/a%zz: invalid character in path"],
    [
      "https://user@dns.example/",
      "unsupported_part",
      "https://user@dns.example/: user info (user@host) is not supported",
    ],
    [
      "https://dns.example/#x",
      "unsupported_part",
      "https://dns.example/#x: a fragment (#...) is not allowed",
    ],
    [
      "tls://9.9.9.9 ",
      "unsupported_part",
      "tls://9.9.9.9 : contains whitespace or control characters",
    ],
    ["", "empty", "empty upstream URL"],
  ])("%j", (text, code, message) => {
    try {
      parseUpstreamUrl(text);
      expect.unreachable(`${text} parsed`);
    } catch (error) {
      expect(error).toBeInstanceOf(UpstreamUrlError);
      expect((error as UpstreamUrlError).code).toBe(code);
      expect((error as Error).message).toBe(message);
    }
  });

  it("throws only UpstreamUrlError, whatever the input", () => {
    const urlish = fc
      .tuple(
        fc.constantFrom(
          "",
          "udp://",
          "tcp://",
          "tls://",
          "https://",
          "http://",
          "h3://",
          "quic://",
          "x://",
        ),
        fc.stringMatching(/^[0-9a-fA-F:.[\]%a-z-]{0,20}$/),
        fc.stringMatching(/^(:[0-9]{0,6})?(\/[a-z?=&{}%]{0,8})?$/),
      )
      .map(([s, h, p]) => s + h + p);
    fc.assert(
      fc.property(fc.oneof(fc.string(), urlish), (text) => {
        try {
          parseUpstreamUrl(text);
        } catch (error) {
          expect(error).toBeInstanceOf(UpstreamUrlError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("parses its own href back to the same value", () => {
    const host = fc.oneof(
      fc.ipV4(),
      fc.ipV6().map((a) => `[${a}]`),
      fc.domain(),
    );
    const text = fc
      .tuple(
        fc.constantFrom(
          "",
          "udp://",
          "tcp://",
          "tls://",
          "https://",
          "http://",
          "h3://",
          "quic://",
        ),
        host,
        fc.option(fc.integer({ min: 1, max: 65535 })),
        fc.constantFrom("", "/dns-query", "/abc123", "/q?x=1"),
      )
      .map(([scheme, h, port, path]) => {
        const withPort = port === null ? h : `${h}:${port}`;
        return scheme === ""
          ? withPort
          : `${scheme}${withPort}${/^(https?|h3):/.test(scheme) ? path : ""}`;
      });
    fc.assert(
      fc.property(text, (input) => {
        let url: ReturnType<typeof parseUpstreamUrl>;
        try {
          url = parseUpstreamUrl(input);
        } catch (error) {
          // fast-check's domains may end in a numeric label, which we refuse.
          expect((error as UpstreamUrlError).code).toBe("bad_host");
          return;
        }
        expect(parseUpstreamUrl(url.href)).toEqual(url);
      }),
    );
  });
});

describe("plainHttpWarning", () => {
  it.each([
    "http://127.0.0.1:8080/dns-query",
    "http://10.1.2.3/dns-query",
    "http://[::1]/dns-query",
    "http://[fd00::53]/dns-query",
    "http://localhost:8787/dns-query",
    "http://relay/dns-query",
    "http://relay.lan/dns-query",
    "http://nas.home.arpa/dns-query",
  ])("stays quiet for loopback/private %s", (text) => {
    expect(plainHttpWarning(parseUpstreamUrl(text))).toBeUndefined();
  });

  it("warns for plain HTTP to a public host", () => {
    expect(plainHttpWarning(parseUpstreamUrl("http://doh.example.com/dns-query"))).toBe(
      "http://doh.example.com/dns-query: http:// sends queries unencrypted to a public host; " +
        "use https://, or keep http:// only behind a TLS-terminating tunnel",
    );
    expect(plainHttpWarning(parseUpstreamUrl("http://8.8.8.8/dns-query"))).toMatch(/unencrypted/);
  });

  it("does not concern https", () => {
    expect(plainHttpWarning(parseUpstreamUrl("https://doh.example.com"))).toBeUndefined();
  });
});

describe("parseHostPort", () => {
  it("reads host:port forms", () => {
    expect(parseHostPort("127.0.0.1:5353")).toEqual({
      host: "127.0.0.1",
      hostKind: "ipv4",
      port: 5353,
    });
    expect(parseHostPort("[::1]:5353")).toEqual({ host: "::1", hostKind: "ipv6", port: 5353 });
    expect(parseHostPort("localhost:53")).toEqual({
      host: "localhost",
      hostKind: "name",
      port: 53,
    });
  });

  it("fills an empty host and a default port when asked", () => {
    expect(parseHostPort(":53", { emptyHost: "0.0.0.0" })).toEqual({
      host: "0.0.0.0",
      hostKind: "ipv4",
      port: 53,
    });
    expect(parseHostPort("9.9.9.9", { defaultPort: 53 }).port).toBe(53);
    expect(parseHostPort("2620:fe::fe", { defaultPort: 53 })).toEqual({
      host: "2620:fe::fe",
      hostKind: "ipv6",
      port: 53,
    });
  });

  it("requires a port unless there is a default", () => {
    expect(() => parseHostPort("127.0.0.1")).toThrow(
      new HostPortError('"127.0.0.1": missing port (write e.g. "127.0.0.1:53")'),
    );
    expect(() => parseHostPort(":53")).toThrow(HostPortError);
    expect(() => parseHostPort("1.2.3.4:70000")).toThrow(/port out of range/);
  });
});
