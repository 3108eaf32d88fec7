// Builds query messages from presentation-form names (JSON API, health
// probes, bootstrap lookups). Raw bytes: no codec needed for a question.

import { DohEdgeError } from "../errors.ts";
import { EDNS_UDP_SIZE } from "./message.ts";

export class NameSyntaxError extends DohEdgeError {
  override readonly name = "NameSyntaxError";
  readonly code = "bad_name";
}

/** Encodes a presentation-form name (RFC 1035 escapes \. and \DDD) to wire labels. */
export function encodeName(name: string): Uint8Array {
  const labels: number[][] = [];
  let label: number[] = [];
  const text = name === "." ? "" : name;
  const bytes = new TextEncoder().encode(text);
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (c === 0x5c /* \ */) {
      const d = bytes.subarray(i + 1, i + 4);
      if (d.length === 3 && d.every((x) => x >= 0x30 && x <= 0x39)) {
        const v = (d[0]! - 48) * 100 + (d[1]! - 48) * 10 + (d[2]! - 48);
        if (v > 255) throw new NameSyntaxError(`${name}: escape \\${v} out of range`);
        label.push(v);
        i += 3;
      } else if (i + 1 < bytes.length) {
        label.push(bytes[++i]!);
      } else {
        throw new NameSyntaxError(`${name}: dangling escape`);
      }
    } else if (c === 0x2e /* . */) {
      if (label.length === 0) throw new NameSyntaxError(`${name}: empty label`);
      labels.push(label);
      label = [];
    } else {
      label.push(c);
    }
  }
  if (label.length > 0) labels.push(label);
  const out: number[] = [];
  for (const l of labels) {
    if (l.length > 63) throw new NameSyntaxError(`${name}: label longer than 63 octets`);
    out.push(l.length, ...l);
  }
  out.push(0);
  if (out.length > 255) throw new NameSyntaxError(`${name}: name longer than 255 octets`);
  return Uint8Array.from(out);
}

export interface QueryOptions {
  id?: number;
  recursionDesired?: boolean;
  checkingDisabled?: boolean;
  /** Adds an OPT record with this UDP size (RFC 6891); undefined = no EDNS. */
  ednsUdpSize?: number;
  dnssecOk?: boolean;
  qclass?: number;
}

export function buildQuery(
  name: string,
  qtype: number,
  options: QueryOptions = {},
): Uint8Array<ArrayBuffer> {
  const qname = encodeName(name);
  const edns = options.ednsUdpSize !== undefined || options.dnssecOk === true;
  const out = new Uint8Array(12 + qname.length + 4 + (edns ? 11 : 0));
  const view = new DataView(out.buffer);
  view.setUint16(0, (options.id ?? 0) & 0xffff);
  let flags = 0;
  if (options.recursionDesired ?? true) flags |= 0x0100;
  if (options.checkingDisabled) flags |= 0x0010;
  view.setUint16(2, flags);
  view.setUint16(4, 1);
  view.setUint16(10, edns ? 1 : 0);
  out.set(qname, 12);
  let o = 12 + qname.length;
  view.setUint16(o, qtype);
  view.setUint16(o + 2, options.qclass ?? 1);
  o += 4;
  if (edns) {
    // root name, TYPE OPT, CLASS = UDP size, TTL = ext-rcode/version/flags, RDLEN 0
    out[o] = 0;
    view.setUint16(o + 1, 41);
    view.setUint16(o + 3, options.ednsUdpSize ?? EDNS_UDP_SIZE);
    view.setUint32(o + 5, options.dnssecOk ? 0x8000 : 0);
    view.setUint16(o + 9, 0);
  }
  return out;
}
