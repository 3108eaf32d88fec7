// Domain names in wire form (RFC 1035 §3.1, §4.1.4): validation with
// compression pointers, and a log-safe presentation form.

import { copyBytes } from "./bytes.ts";
import { DnsWireError } from "./wire-error.ts";

/** RFC 1035 §2.3.4: a name is at most 255 octets in wire form, terminal zero included. */
export const MAX_NAME_LENGTH = 255;

// Each step either consumes a label (at most 127 fit in 255 octets) or follows
// a pointer to a strictly smaller offset (pointer targets are 14-bit).
const MAX_NAME_STEPS = 128 + 0x4000;

export interface ScannedName {
  /** Offset just past the name where it was found (after the first pointer, if any). */
  end: number;
  /** Wire length of the uncompressed name, terminal zero included. */
  length: number;
}

/**
 * Validates the name at `start` and, when `out` (255+ bytes) is given, copies
 * its uncompressed wire form there. Labels at the starting position must end
 * before `limit` (the end of the RDATA for names inside RDATA); labels reached
 * through pointers must end before the end of the message. Every pointer must
 * lead strictly before the start of the run of labels it ends, so following
 * pointers always terminates.
 */
export function scanName(
  msg: Uint8Array,
  start: number,
  limit: number,
  out?: Uint8Array,
): ScannedName {
  let pos = start;
  let segmentStart = start;
  let bound = Math.min(limit, msg.length);
  let end = -1;
  let length = 0;
  for (let step = 0; step < MAX_NAME_STEPS; step++) {
    if (pos >= bound) throw new DnsWireError("truncated_name", "name runs past the end", pos);
    const len = msg[pos]!;
    const kind = len & 0xc0;
    if (kind === 0) {
      if (len === 0) {
        if (out) out[length] = 0;
        return { end: end < 0 ? pos + 1 : end, length: length + 1 };
      }
      if (pos + 1 + len > bound) {
        throw new DnsWireError("truncated_name", "label runs past the end", pos);
      }
      if (length + len + 2 > MAX_NAME_LENGTH) {
        throw new DnsWireError("name_too_long", "name longer than 255 octets", pos);
      }
      if (out) for (let i = 0; i <= len; i++) out[length + i] = msg[pos + i]!;
      length += len + 1;
      pos += len + 1;
    } else if (kind === 0xc0) {
      if (pos + 1 >= bound) throw new DnsWireError("truncated_name", "pointer cut short", pos);
      const target = ((len & 0x3f) << 8) | msg[pos + 1]!;
      if (target > pos) {
        throw new DnsWireError("forward_pointer", `pointer to later offset ${target}`, pos);
      }
      if (target >= segmentStart) {
        throw new DnsWireError("pointer_loop", `pointer to ${target} loops`, pos);
      }
      if (end < 0) end = pos + 2;
      pos = target;
      segmentStart = target;
      bound = msg.length;
    } else {
      throw new DnsWireError("bad_label_type", `label type 0x${len.toString(16)}`, pos);
    }
  }
  throw new DnsWireError("pointer_loop", "name does not end", start);
}

/** Offset just past the valid name at `start`. */
export function skipName(msg: Uint8Array, start: number, limit = msg.length): number {
  return scanName(msg, start, limit).end;
}

/** Where readName assembles a name before copying out exactly its length. */
const nameScratch = new Uint8Array(MAX_NAME_LENGTH);

/** The uncompressed wire form (original case) of the name at `start`, and where it ends. */
export function readName(
  msg: Uint8Array,
  start: number,
  limit = msg.length,
): { wire: Uint8Array; end: number } {
  const { end, length } = scanName(msg, start, limit, nameScratch);
  return { wire: copyBytes(nameScratch.subarray(0, length)), end };
}

/** The presentation form (nameToText) of the valid name at `start`, and where it ends; no copy made. */
export function readNameText(
  msg: Uint8Array,
  start: number,
  limit = msg.length,
): { text: string; end: number } {
  const { end, length } = scanName(msg, start, limit, nameScratch);
  return { text: nameToText(nameScratch, length), end };
}

/**
 * Presentation form of an uncompressed wire name (its first `length`
 * bytes): lower-cased, trailing dot, "." for the root. '.', '\' and bytes
 * outside printable ASCII (space included) are escaped RFC 1035 style
 * (\. \\ \DDD), so the text is safe to log.
 */
export function nameToText(wire: Uint8Array, length = wire.length): string {
  const codes: number[] = [];
  let pos = 0;
  while (pos < length) {
    const len = wire[pos]!;
    if (len === 0) break;
    const stop = Math.min(pos + 1 + len, length);
    for (let i = pos + 1; i < stop; i++) {
      const c = wire[i]!;
      if (c >= 0x41 && c <= 0x5a) codes.push(c | 0x20);
      else if (c === 0x2e || c === 0x5c) codes.push(0x5c, c);
      else if (c <= 0x20 || c >= 0x7f) {
        codes.push(
          0x5c,
          0x30 + Math.floor(c / 100),
          0x30 + (Math.floor(c / 10) % 10),
          0x30 + (c % 10),
        );
      } else codes.push(c);
    }
    codes.push(0x2e);
    pos = stop;
  }
  // At most 255 octets escaped four-fold: well inside fromCharCode's argument limit.
  return codes.length === 0 ? "." : String.fromCharCode(...codes);
}

/** Case-insensitive (ASCII) equality of two uncompressed wire names. */
export function namesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (
      x !== y &&
      (x >= 0x41 && x <= 0x5a ? x | 0x20 : x) !== (y >= 0x41 && y <= 0x5a ? y | 0x20 : y)
    ) {
      return false;
    }
  }
  return true;
}
