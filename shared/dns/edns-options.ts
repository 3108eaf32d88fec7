// The OPT record is hop-by-hop (RFC 6891 §6.1.1): its options are rewritten
// at each hop, never copied through. What the relay and the worker do:
//
// - Toward an upstream, only ECS (8) is forwarded (another layer decides its
//   policy). TCP keepalive (11) describes the client's connection and is a
//   DoQ protocol error (RFC 9250 §5.5.2); a cookie (10) belongs to one
//   client-server pair (RFC 7873); padding (12) is regenerated per hop; NSID
//   (3) is a request to the next server only (RFC 5001 §2.3); options we do
//   not know may be just as hop-bound, so they are dropped too.
// - From an upstream, keepalive, cookie, padding and NSID are removed before
//   the answer is cached or served: they were meant for this hop. EDE (15),
//   ECS and everything else stay.
// - Encrypted hops pad (RFC 8467 block-length policy): queries to 128-byte
//   blocks, answers to 468-byte blocks, the latter only for a client whose
//   query carried padding (RFC 8467 §4.1). Only messages that already carry
//   an OPT are padded: adding EDNS a client never sent would change what the
//   upstream answers.
//
// Every function returns its input itself when nothing changes (no copy: a
// query without additional records costs a header read, one with an OPT
// without options one walk), and a fresh Uint8Array otherwise, except
// fromUpstream: an answer is its caller's alone (shared/engine/upstream.ts),
// so options leave it in place and a shorter view of the same memory comes
// back. Malformed input throws DnsWireError.

import {
  findOpt,
  HEADER_SIZE,
  MAX_MESSAGE_SIZE,
  type RecordInfo,
  u16,
  writeU16,
} from "./message.ts";
import { skipName } from "./names.ts";
import { DnsWireError, guarded } from "./wire-error.ts";

export const EdnsOptionCode = {
  NSID: 3,
  ECS: 8,
  COOKIE: 10,
  TCP_KEEPALIVE: 11,
  PADDING: 12,
  EDE: 15,
} as const;

/** RFC 8467 §4.1: queries padded to multiples of 128 bytes. */
export const QUERY_PAD_BLOCK = 128;
/** RFC 8467 §4.1: answers padded to multiples of 468 bytes. */
export const ANSWER_PAD_BLOCK = 468;

const keptTowardUpstream = (code: number) => code === EdnsOptionCode.ECS;

const HOP_BY_HOP_IN_ANSWERS: ReadonlySet<number> = new Set([
  EdnsOptionCode.NSID,
  EdnsOptionCode.COOKIE,
  EdnsOptionCode.TCP_KEEPALIVE,
  EdnsOptionCode.PADDING,
]);
const keptFromUpstream = (code: number) => !HOP_BY_HOP_IN_ANSWERS.has(code);

// Types whose RDATA may hold compressed names (RFC 3597 §4): records after
// the OPT of these types could point past it, and a rewrite moves them.
const NAMES_IN_RDATA: ReadonlySet<number> = new Set([
  2, 3, 4, 5, 6, 7, 8, 9, 12, 14, 15, 17, 18, 21, 24, 26, 30, 33, 35,
]);

interface OptionSpan {
  code: number;
  /** Offset of the option's code field. */
  start: number;
  /** Offset just past its data. */
  end: number;
}

function optionSpans(msg: Uint8Array, opt: RecordInfo): OptionSpan[] {
  const spans: OptionSpan[] = [];
  let pos = opt.rdataOffset;
  while (pos < opt.end) {
    if (pos + 4 > opt.end) throw new DnsWireError("bad_opt", "option header cut short", pos);
    const end = pos + 4 + u16(msg, pos + 2);
    if (end > opt.end) {
      throw new DnsWireError("bad_opt", "option length runs past the OPT RDATA", pos);
    }
    spans.push({ code: u16(msg, pos), start: pos, end });
    pos = end;
  }
  return spans;
}

/** The first compression pointer's target in the (valid) name at `pos`, or -1. */
function firstPointer(msg: Uint8Array, pos: number): number {
  for (;;) {
    const len = msg[pos]!;
    if (len === 0) return -1;
    if ((len & 0xc0) === 0xc0) return ((len & 0x3f) << 8) | msg[pos + 1]!;
    pos += len + 1;
  }
}

/**
 * Records after the OPT move when its length changes: none may point at or
 * past it (pointers lead strictly backwards, so the first one decides).
 */
function checkMovable(msg: Uint8Array, opt: RecordInfo, end: number): void {
  let pos = opt.end;
  while (pos < end) {
    if (firstPointer(msg, pos) >= opt.offset) {
      throw new DnsWireError("bad_opt", "a record after the OPT points past it", pos);
    }
    const nameEnd = skipName(msg, pos);
    if (NAMES_IN_RDATA.has(u16(msg, nameEnd))) {
      throw new DnsWireError("bad_opt", "a record after the OPT may hold compressed names", pos);
    }
    pos = nameEnd + 10 + u16(msg, nameEnd + 8);
  }
}

/**
 * `msg` with its OPT's options filtered by `keep` and, with `padBlock`, a
 * fresh padding option making the whole message a multiple of `padBlock`
 * bytes (none when that would pass 65535). Returns `msg` itself when it has
 * no OPT (unread when ARCOUNT is 0), or when nothing would change. Bytes
 * after the last record are dropped from a rewritten message. With
 * `inPlace` and no padding, the options are removed within `msg` itself and
 * a view of its first bytes comes back. Throws DnsWireError for a malformed
 * message or OPT.
 */
export function rewriteOptions(
  msg: Uint8Array,
  keep: (code: number) => boolean,
  padBlock?: number,
  inPlace = false,
): Uint8Array {
  return guarded(() => {
    if (padBlock !== undefined && (!Number.isInteger(padBlock) || padBlock < 1)) {
      throw new DnsWireError("bad_argument", `padding block ${padBlock} is not a positive integer`);
    }
    // No additional records, no OPT: returned unread (the common plain query).
    if (msg.length >= HEADER_SIZE && u16(msg, 10) === 0) return msg;
    const { layout, opt } = findOpt(msg);
    if (!opt) return msg;
    const spans = optionSpans(msg, opt);
    const kept = spans.filter((s) => keep(s.code) && s.code !== EdnsOptionCode.PADDING);
    if (padBlock === undefined && kept.length === spans.length) return msg;
    if (layout.end > opt.end) checkMovable(msg, opt, layout.end);
    let rdlength = 0;
    for (const s of kept) rdlength += s.end - s.start;
    const bare = layout.end - opt.rdlength + rdlength;
    let padding = -1; // bytes of padding data; -1 = no padding option
    if (padBlock !== undefined) {
      const padded = Math.ceil((bare + 4) / padBlock) * padBlock;
      if (padded <= MAX_MESSAGE_SIZE) padding = padded - bare - 4;
    }
    if (padding >= 0) rdlength += 4 + padding;
    const length = layout.end - opt.rdlength + rdlength;
    if (inPlace && padBlock === undefined) {
      // Only removals: every byte moves toward the start, never past one not yet read.
      writeU16(msg, opt.rdataOffset - 2, rdlength);
      let at = opt.rdataOffset;
      for (const s of kept) {
        msg.copyWithin(at, s.start, s.end);
        at += s.end - s.start;
      }
      msg.copyWithin(at, opt.end, layout.end);
      return msg.subarray(0, length);
    }
    const out = new Uint8Array(length);
    out.set(msg.subarray(0, opt.rdataOffset));
    writeU16(out, opt.rdataOffset - 2, rdlength);
    let pos = opt.rdataOffset;
    for (const s of kept) {
      out.set(msg.subarray(s.start, s.end), pos);
      pos += s.end - s.start;
    }
    if (padding >= 0) {
      writeU16(out, pos, EdnsOptionCode.PADDING);
      writeU16(out, pos + 2, padding);
      pos += 4 + padding; // zeros already (RFC 7830 §4)
    }
    out.set(msg.subarray(opt.end, layout.end), pos);
    return out;
  });
}

/** The query as it leaves toward an upstream: only ECS kept (see the top of this file). */
export function forUpstream(query: Uint8Array): Uint8Array {
  return rewriteOptions(query, keptTowardUpstream);
}

/**
 * An upstream's answer as it may be cached and served: its hop-by-hop
 * options removed, in the answer's own memory (the caller's alone).
 */
export function fromUpstream(answer: Uint8Array): Uint8Array {
  return rewriteOptions(answer, keptFromUpstream, undefined, true);
}

/**
 * A query for an encrypted hop: any padding replaced by padding to `block`
 * bytes (RFC 8467, 128 by default). A query without OPT, or one too
 * malformed to rewrite (the server will say so), goes as it is.
 */
export function padQuery(query: Uint8Array, block = QUERY_PAD_BLOCK): Uint8Array {
  try {
    return rewriteOptions(query, () => true, block);
  } catch {
    return query;
  }
}

/** Whether the message's OPT carries a padding option; false when malformed. */
export function hasPadding(msg: Uint8Array): boolean {
  // Fast exit for the common query: no additional records at all.
  if (msg.length < HEADER_SIZE || u16(msg, 10) === 0) return false;
  try {
    const { opt } = findOpt(msg);
    return (
      opt !== undefined && optionSpans(msg, opt).some((s) => s.code === EdnsOptionCode.PADDING)
    );
  } catch {
    return false;
  }
}

/**
 * The answer for a client of an encrypted listener: padded to 468-byte
 * blocks when the client's query carried padding (RFC 8467 §4.1), else
 * `answer` itself. An answer that cannot be padded goes as it is.
 */
export function padAnswerFor(query: Uint8Array, answer: Uint8Array): Uint8Array {
  if (!hasPadding(query)) return answer;
  try {
    return rewriteOptions(answer, () => true, ANSWER_PAD_BLOCK);
  } catch {
    return answer;
  }
}
