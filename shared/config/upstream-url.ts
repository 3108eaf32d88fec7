// The upstream URL grammar (README, `upstreams[]`; fanout-compatible):
//   1.2.3.4  1.2.3.4:5353  [2001:db8::1]:53  2001:db8::1  dns.example:53   → udp
//   udp:// tcp:// tls:// quic://host[:port]
//   https:// http:// h3://host[:port][/path]   (path defaults to /dns-query)
// Parsed into a typed value with the default port filled in and a normalized
// href (lower-case scheme and host, canonical IPv6, default port left out).

import { DOH_PATH } from "../doh/doh-request.ts";
import { DohEdgeError } from "../errors.ts";
import {
  bracketHost,
  formatHostPort,
  formatIp,
  isLoopbackOrPrivate,
  parseIpv4,
  parseIpv6,
} from "./ip.ts";

export { formatHostPort };

export const UPSTREAM_PROTOCOLS = ["udp", "tcp", "tls", "https", "http", "h3", "quic"] as const;
export type UpstreamProtocol = (typeof UPSTREAM_PROTOCOLS)[number];
export type DohProtocol = "https" | "http" | "h3";
export type HostKind = "ipv4" | "ipv6" | "name";

export const DEFAULT_PORTS: Readonly<Record<UpstreamProtocol, number>> = {
  udp: 53,
  tcp: 53,
  tls: 853,
  https: 443,
  http: 80,
  h3: 443,
  quic: 853,
};

export interface UpstreamUrl {
  readonly protocol: UpstreamProtocol;
  /** Lower-case name without a trailing dot, dotted quad, or canonical IPv6 without brackets. */
  readonly host: string;
  readonly hostKind: HostKind;
  readonly port: number;
  /** DoH only (https, http, h3): path plus any query string; DOH_PATH when none is written. */
  readonly path?: string;
  /** Normalized form: scheme://host[:port][path], the port only when not the default. */
  readonly href: string;
}

export type UpstreamUrlErrorCode =
  | "empty"
  | "unsupported_scheme"
  | "missing_host"
  | "bad_host"
  | "bad_port"
  | "unexpected_path"
  | "bad_path"
  | "unsupported_part";

export class UpstreamUrlError extends DohEdgeError {
  override readonly name = "UpstreamUrlError";
  readonly code: UpstreamUrlErrorCode;
  constructor(code: UpstreamUrlErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

export class HostPortError extends DohEdgeError {
  override readonly name = "HostPortError";
  readonly code = "bad_address";
}

export interface HostPort {
  readonly host: string;
  readonly hostKind: HostKind;
  readonly port: number;
}

export function isDohProtocol(protocol: UpstreamProtocol): protocol is DohProtocol {
  return protocol === "https" || protocol === "http" || protocol === "h3";
}

/** Protocols that run over TLS and so take tls_servername, ca, cert and key. */
export function isTlsProtocol(protocol: UpstreamProtocol): boolean {
  return protocol === "tls" || protocol === "https" || protocol === "h3" || protocol === "quic";
}

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;
const KNOWN_SCHEME_WITHOUT_SLASHES = /^(udp|tcp|tls|https|http|h3|quic):(?!\/\/)/i;
const PATH_CHARS = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*$/;
const SCHEMES_TEXT = "use udp, tcp, tls, https, http, h3 or quic";

/** Parses one upstream address; throws UpstreamUrlError naming the bad part. */
export function parseUpstreamUrl(text: string): UpstreamUrl {
  if (typeof text !== "string") {
    throw new UpstreamUrlError("empty", `upstream URL must be a string, got ${typeof text}`);
  }
  const fail = (code: UpstreamUrlErrorCode, why: string) =>
    new UpstreamUrlError(code, `${text}: ${why}`);
  if (text === "") throw new UpstreamUrlError("empty", "empty upstream URL");
  if (/[\s\u0000-\u001f\u007f]/.test(text)) {
    throw fail("unsupported_part", "contains whitespace or control characters");
  }
  if (text.includes("#")) throw fail("unsupported_part", "a fragment (#...) is not allowed");

  const scheme = SCHEME.exec(text);
  if (!scheme) {
    const near = KNOWN_SCHEME_WITHOUT_SLASHES.exec(text);
    if (near) {
      const name = near[1]!.toLowerCase();
      throw fail("unsupported_scheme", `write the scheme as "${name}://"`);
    }
    return parseBare(text, fail);
  }
  const protocol = scheme[1]!.toLowerCase();
  if (!isUpstreamProtocol(protocol)) {
    throw fail("unsupported_scheme", `unsupported scheme "${protocol}" (${SCHEMES_TEXT})`);
  }
  const rest = text.slice(scheme[0].length);
  const cut = rest.search(/[/?]/);
  const authority = cut === -1 ? rest : rest.slice(0, cut);
  const pathText = cut === -1 ? "" : rest.slice(cut);
  if (authority.includes("@")) {
    throw fail("unsupported_part", "user info (user@host) is not supported");
  }
  if (authority === "") throw fail("missing_host", "missing host");
  const where = splitHostPort(authority, true);
  if ("why" in where) {
    throw fail(where.code, where.why.replace("{scheme}", `${protocol}://`));
  }

  let path: string | undefined;
  if (isDohProtocol(protocol)) {
    if (pathText === "") path = DOH_PATH;
    else {
      if (pathText.startsWith("?")) path = `/${pathText}`;
      else path = pathText;
      if (/[{}]/.test(path)) {
        throw fail("bad_path", "write the path without a URI template ({?dns}); GET adds ?dns=");
      }
      if (!PATH_CHARS.test(path)) throw fail("bad_path", "invalid character in path");
    }
  } else if (pathText !== "" && pathText !== "/") {
    throw fail("unexpected_path", `${protocol}:// takes no path (only https, http and h3 do)`);
  }
  return build(protocol, where, path);
}

function parseBare(
  text: string,
  fail: (code: UpstreamUrlErrorCode, why: string) => UpstreamUrlError,
): UpstreamUrl {
  if (/[/?]/.test(text)) {
    throw fail(
      "unexpected_path",
      "a bare address is plain DNS and takes no path; for DoH write https://host/path",
    );
  }
  if (text.includes("@")) throw fail("unsupported_part", "user info (user@host) is not supported");
  const where = splitHostPort(text, false);
  if ("why" in where) throw fail(where.code, where.why);
  return build("udp", where, undefined);
}

function build(
  protocol: UpstreamProtocol,
  where: { host: string; hostKind: HostKind; port: number | undefined },
  path: string | undefined,
): UpstreamUrl {
  const port = where.port ?? DEFAULT_PORTS[protocol];
  const hostText = bracketHost(where.host);
  const portText = port === DEFAULT_PORTS[protocol] ? "" : `:${port}`;
  const href = `${protocol}://${hostText}${portText}${path ?? ""}`;
  const url: UpstreamUrl = { protocol, host: where.host, hostKind: where.hostKind, port, href };
  return path === undefined ? url : { ...url, path };
}

function isUpstreamProtocol(text: string): text is UpstreamProtocol {
  return (UPSTREAM_PROTOCOLS as readonly string[]).includes(text);
}

type Split =
  | { host: string; hostKind: HostKind; port: number | undefined }
  | { code: UpstreamUrlErrorCode; why: string };

/**
 * host, host:port, [v6], [v6]:port; a bare IPv6 address without brackets
 * (and so without a port) only when `inUrl` is false.
 */
function splitHostPort(text: string, inUrl: boolean): Split {
  let hostText: string;
  let portText: string | undefined;
  let bracketed = false;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close === -1) return { code: "bad_host", why: 'missing "]" after the IPv6 address' };
    hostText = text.slice(1, close);
    bracketed = true;
    const after = text.slice(close + 1);
    if (after !== "") {
      if (!after.startsWith(":")) {
        return { code: "bad_host", why: `unexpected "${after}" after "]"` };
      }
      portText = after.slice(1);
    }
  } else {
    const colons = text.split(":").length - 1;
    if (colons > 1) {
      if (inUrl) {
        return {
          code: "bad_host",
          why: "an IPv6 address in a URL goes in brackets: {scheme}[address]:port",
        };
      }
      // A bare IPv6 address: no brackets, so no port.
      hostText = text;
    } else if (colons === 1) {
      const colon = text.indexOf(":");
      hostText = text.slice(0, colon);
      portText = text.slice(colon + 1);
    } else {
      hostText = text;
    }
  }
  if (hostText === "") return { code: "missing_host", why: "missing host" };

  let port: number | undefined;
  if (portText !== undefined) {
    if (portText === "") return { code: "bad_port", why: 'missing port after ":"' };
    if (!/^\d+$/.test(portText)) return { code: "bad_port", why: `invalid port "${portText}"` };
    port = Number(portText);
    if (port < 1 || port > 65535) return { code: "bad_port", why: "port out of range" };
  }

  const v6 = hostText.includes(":") ? parseIpv6(hostText) : undefined;
  if (v6) return { host: formatIp({ family: 6, bytes: v6 }), hostKind: "ipv6", port };
  if (hostText.includes("%") && parseIpv6(hostText.slice(0, hostText.indexOf("%")))) {
    return {
      code: "bad_host",
      why: `zone ids (${hostText.slice(hostText.indexOf("%"))}) are not supported`,
    };
  }
  if (bracketed || hostText.includes(":")) {
    return { code: "bad_host", why: `"${hostText}" is not a valid IPv6 address` };
  }
  const v4 = parseIpv4(hostText);
  if (v4) return { host: Array.from(v4).join("."), hostKind: "ipv4", port };
  if (/^[\d.]+$/.test(hostText)) {
    return { code: "bad_host", why: `"${hostText}" is not a valid IPv4 address` };
  }
  const name = normalizeHostName(hostText);
  if (name === undefined)
    return { code: "bad_host", why: `"${hostText}" is not a valid host name` };
  return { host: name, hostKind: "name", port };
}

const HOST_LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** Lower-cases and drops one trailing dot; undefined when not a valid host name. */
function normalizeHostName(text: string): string | undefined {
  const name = (text.endsWith(".") ? text.slice(0, -1) : text).toLowerCase();
  if (name === "" || name.length > 253) return undefined;
  const labels = name.split(".");
  if (!labels.every((label) => HOST_LABEL.test(label))) return undefined;
  // A numeric last label would make it look like a (bad) IPv4 address.
  if (/^\d+$/.test(labels[labels.length - 1]!)) return undefined;
  return name;
}

/**
 * Parses "host:port", "[v6]:port", or (without a port, when `defaultPort`
 * is given) "host", "[v6]" and a bare IPv6 address. An empty host (":53")
 * is allowed only with `emptyHost`, which is returned in its place.
 */
export function parseHostPort(
  text: string,
  options: { defaultPort?: number; emptyHost?: string } = {},
): HostPort {
  const fail = (why: string) => new HostPortError(`${JSON.stringify(text)}: ${why}`);
  if (typeof text !== "string" || text === "") throw fail("empty address");
  if (/[\s/?#@]/.test(text)) throw fail('expected "host:port"');
  let input = text;
  if (options.emptyHost !== undefined && text.startsWith(":") && !text.startsWith("::")) {
    input = `${bracketHost(options.emptyHost)}${text}`;
  }
  const where = splitHostPort(input, false);
  if ("why" in where) throw fail(where.why);
  if (where.port === undefined) {
    if (options.defaultPort === undefined) {
      throw fail(`missing port (write e.g. "${formatHostPort({ host: where.host, port: 53 })}")`);
    }
    return { host: where.host, hostKind: where.hostKind, port: options.defaultPort };
  }
  return { host: where.host, hostKind: where.hostKind, port: where.port };
}

const PRIVATE_NAME_SUFFIXES = [".localhost", ".home.arpa", ".internal", ".local", ".lan"];

/**
 * Whether a host is on loopback or a private network: a loopback/private/
 * link-local address, "localhost", a single-label name (resolved by a LAN
 * search domain), or a name under localhost, home.arpa, internal, local, lan.
 */
export function isPrivateHost(host: string, hostKind: HostKind): boolean {
  if (hostKind === "ipv4") return isLoopbackOrPrivate({ family: 4, bytes: parseIpv4(host)! });
  if (hostKind === "ipv6") return isLoopbackOrPrivate({ family: 6, bytes: parseIpv6(host)! });
  if (host === "localhost" || !host.includes(".")) return true;
  return PRIVATE_NAME_SUFFIXES.some((suffix) => host.endsWith(suffix));
}

/** A warning for plain-HTTP DoH to a host that is not loopback or private; else undefined. */
export function plainHttpWarning(url: UpstreamUrl): string | undefined {
  if (url.protocol !== "http" || isPrivateHost(url.host, url.hostKind)) return undefined;
  return (
    `${url.href}: http:// sends queries unencrypted to a public host; ` +
    "use https://, or keep http:// only behind a TLS-terminating tunnel"
  );
}
