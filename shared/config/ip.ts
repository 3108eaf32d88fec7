// IP addresses and CIDR blocks as bytes: parse every textual form, format
// canonically (RFC 5952), match clients against allow lists. IPv4-mapped IPv6
// addresses (::ffff:10.0.0.1) are folded to IPv4 so an ACL written in IPv4
// cannot be sidestepped by a dual-stack socket's view of the same client.

import { copyBytes } from "../dns/bytes.ts";
import { DohEdgeError } from "../errors.ts";

export class IpAddressError extends DohEdgeError {
  override readonly name = "IpAddressError";
  readonly code = "bad_ip";
}

export class CidrError extends DohEdgeError {
  override readonly name = "CidrError";
  readonly code = "bad_cidr";
}

export type IpFamily = 4 | 6;

export interface IpAddress {
  readonly family: IpFamily;
  /** 4 or 16 bytes, network order. */
  readonly bytes: Uint8Array;
}

export interface Cidr {
  readonly family: IpFamily;
  /** The network address: host bits are zero. */
  readonly bytes: Uint8Array;
  readonly prefix: number;
}

/** Loopback and private ranges: the relay's default allow list. */
export const LOOPBACK_AND_PRIVATE_CIDRS = [
  "127.0.0.0/8",
  "::1/128",
  "10.0.0.0/8",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "fc00::/7",
  "fe80::/10",
] as const;

const DECIMAL_OCTET = /^(0|[1-9]\d{0,2})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/** Strict dotted quad: four decimal octets, no leading zeros (they read as octal elsewhere). */
export function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const part = parts[i]!;
    if (!DECIMAL_OCTET.test(part)) return undefined;
    const value = Number(part);
    if (value > 255) return undefined;
    out[i] = value;
  }
  return out;
}

/** Every RFC 4291 §2.2 text form: full, "::"-compressed, embedded IPv4. No zone ids. */
export function parseIpv6(text: string): Uint8Array | undefined {
  if (text.length > 45 || text.includes("%")) return undefined;
  const gap = text.indexOf("::");
  if (gap !== -1 && text.indexOf("::", gap + 1) !== -1) return undefined;
  const split = (s: string) => (s === "" ? [] : s.split(":"));
  const head = gap === -1 ? text.split(":") : split(text.slice(0, gap));
  const tail = gap === -1 ? [] : split(text.slice(gap + 2));
  // Only the very last group may be a dotted IPv4 address (two groups' worth).
  const decode = (parts: string[], last: boolean): number[] | undefined => {
    const out: number[] = [];
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      if (last && i === parts.length - 1 && part.includes(".")) {
        const v4 = parseIpv4(part);
        if (!v4) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (HEX_GROUP.test(part)) {
        out.push(Number.parseInt(part, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const headGroups = decode(head, gap === -1);
  const tailGroups = decode(tail, true);
  if (!headGroups || !tailGroups) return undefined;
  const count = headGroups.length + tailGroups.length;
  // Without "::" all eight groups are written; "::" stands for at least one.
  if (gap === -1 ? count !== 8 : count > 7) return undefined;
  const groups = [...headGroups, ...new Array<number>(8 - count).fill(0), ...tailGroups];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/** Parses an IPv4 or IPv6 address; throws IpAddressError saying what is wrong. */
export function parseIp(text: string): IpAddress {
  const v4 = parseIpv4(text);
  if (v4) return { family: 4, bytes: v4 };
  const v6 = parseIpv6(text);
  if (v6) return { family: 6, bytes: v6 };
  throw new IpAddressError(`${JSON.stringify(text)}: ${whyNotIp(text)}`);
}

/** The address, or undefined when the text is not an IP address. */
export function tryParseIp(text: string): IpAddress | undefined {
  const v4 = parseIpv4(text);
  if (v4) return { family: 4, bytes: v4 };
  const v6 = parseIpv6(text);
  return v6 ? { family: 6, bytes: v6 } : undefined;
}

function whyNotIp(text: string): string {
  const zone = text.indexOf("%");
  if (zone !== -1 && parseIpv6(text.slice(0, zone))) {
    return `zone ids (${text.slice(zone)}) are not supported; write the address without it`;
  }
  if (text.startsWith("[") && text.endsWith("]")) {
    return "brackets belong around an IPv6 address only when a port follows; drop them";
  }
  if (/^[\d.]+$/.test(text)) {
    if (text.split(".").some((p) => /^0\d/.test(p))) {
      return "leading zeros are not allowed in an IPv4 address (some tools read them as octal)";
    }
    return "an IPv4 address is four decimal numbers 0-255 separated by dots";
  }
  return text.includes(":") ? "not a valid IPv6 address" : "not an IPv4 or IPv6 address";
}

/** Folds an IPv4-mapped IPv6 address (::ffff:a.b.c.d) to plain IPv4; others unchanged. */
export function normalizeIp(address: IpAddress): IpAddress {
  if (address.family === 6 && isV4Mapped(address.bytes)) {
    return { family: 4, bytes: copyBytes(address.bytes.subarray(12)) };
  }
  return address;
}

function isV4Mapped(bytes: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

/**
 * A host as URLs and "host:port" strings write it: an IPv6 literal (the only
 * host with a ":") in brackets, anything else as it is.
 */
export function bracketHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

/** "host:port", with an IPv6 host in brackets: "[::1]:53", "127.0.0.1:53", "dns.google:853". */
export function formatHostPort(address: { readonly host: string; readonly port: number }): string {
  return `${bracketHost(address.host)}:${address.port}`;
}

/** Dotted quad, or RFC 5952 canonical IPv6 (lower case, longest zero run as "::"). */
export function formatIp(address: IpAddress): string {
  const b = address.bytes;
  if (address.family === 4) return Array.from(b).join(".");
  if (isV4Mapped(b)) return `::ffff:${Array.from(b.subarray(12)).join(".")}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  let bestStart = -1;
  let bestLength = 1; // a single zero group is not compressed (RFC 5952 §4.2.2)
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(":");
  if (bestStart === -1) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

/**
 * Parses "10.0.0.0/8", "fc00::/7", or a bare address (a /32 or /128 host
 * block). Host bits must be zero. An IPv4-mapped IPv6 block (::ffff:10.0.0.0/104)
 * becomes the IPv4 block it denotes.
 */
export function parseCidr(text: string): Cidr {
  const fail = (why: string) => new CidrError(`${JSON.stringify(text)}: ${why}`);
  const slash = text.indexOf("/");
  const addressText = slash === -1 ? text : text.slice(0, slash);
  const address = tryParseIp(addressText);
  if (!address) {
    const why = whyNotIp(addressText);
    throw fail(slash === -1 ? why : `network address ${JSON.stringify(addressText)}: ${why}`);
  }
  const max = address.family === 4 ? 32 : 128;
  let prefix = max;
  if (slash !== -1) {
    const prefixText = text.slice(slash + 1);
    if (!/^(0|[1-9]\d{0,2})$/.test(prefixText) || Number(prefixText) > max) {
      throw fail(`prefix length must be a number from 0 to ${max}`);
    }
    prefix = Number(prefixText);
  }
  const network = maskBytes(address.bytes, prefix);
  if (!network.every((byte, i) => byte === address.bytes[i])) {
    const suggestion = formatCidr({ family: address.family, bytes: network, prefix });
    throw fail(`host bits are set after /${prefix}; did you mean ${suggestion}?`);
  }
  if (address.family === 6 && prefix >= 96 && isV4Mapped(network)) {
    return { family: 4, bytes: copyBytes(network.subarray(12)), prefix: prefix - 96 };
  }
  return { family: address.family, bytes: network, prefix };
}

export function formatCidr(cidr: Cidr): string {
  return `${formatIp(cidr)}/${cidr.prefix}`;
}

function maskBytes(bytes: Uint8Array, prefix: number): Uint8Array {
  const out = copyBytes(bytes);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    out[i] = out[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}

/** Whether the block contains the address; IPv4-mapped IPv6 addresses count as IPv4. */
export function cidrContains(cidr: Cidr, address: IpAddress): boolean {
  const a = normalizeIp(address);
  if (a.family !== cidr.family) return false;
  const full = cidr.prefix >> 3;
  for (let i = 0; i < full; i++) if (a.bytes[i] !== cidr.bytes[i]) return false;
  const bits = cidr.prefix & 7;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (a.bytes[full]! & mask) === cidr.bytes[full];
}

/** Whether the address is loopback, private (RFC 1918, ULA) or link-local. */
export function isLoopbackOrPrivate(address: IpAddress): boolean {
  return PRIVATE_BLOCKS.some((block) => cidrContains(block, address));
}

const PRIVATE_BLOCKS: readonly Cidr[] = LOOPBACK_AND_PRIVATE_CIDRS.map(parseCidr);
