// Raw-byte DNS message helpers for the hot path: they walk bytes and never
// decode a whole message. Every helper returns a safe result or throws
// DnsWireError; nothing else escapes. (Full decoding lives in codec.ts.)

import { copyBytes } from "./bytes.ts";
import { EDE_OPTION_CODE, Rcode, RrType } from "./codes.ts";
import {
  checkSize,
  EDNS_UDP_SIZE,
  ednsOf,
  findOpt,
  HEADER_SIZE,
  MAX_MESSAGE_SIZE,
  type MessageLayout,
  type RecordInfo,
  readQuestionWire,
  u32,
  walkRecords,
  writeU16,
  writeU32,
} from "./message.ts";
import { namesEqual, readName, skipName } from "./names.ts";
import { DnsWireError, guarded } from "./wire-error.ts";

export { EDE_OPTION_CODE, EdeCode, Rcode, RrType, rrTypeFromName, rrTypeName } from "./codes.ts";
export {
  EDNS_UDP_SIZE,
  type Edns,
  type EdnsOption,
  findOpt,
  type Header,
  isQuery,
  MAX_MESSAGE_SIZE,
  type MessageLayout,
  type Question,
  type RecordInfo,
  type RecordSection,
  readEdns,
  readHeader,
  readId,
  readQuestion,
  readRcode,
  sameQuestion,
  setId,
  walkRecords,
  withId,
} from "./message.ts";
export { MAX_NAME_LENGTH, nameToText } from "./names.ts";
export { DnsWireError, type DnsWireErrorCode } from "./wire-error.ts";

/** Longest EDE EXTRA-TEXT we write, in UTF-8 bytes. */
export const MAX_EDE_TEXT = 1024;

// RFC 2181 §8: a TTL with the most significant bit set counts as zero.
const effectiveTtl = (ttl: number) => (ttl > 0x7fffffff ? 0 : ttl);

interface ScannedMessage {
  layout: MessageLayout;
  records: RecordInfo[];
  /** RFC 2308 negative answer: NXDOMAIN, or NOERROR without answer records (NODATA). */
  negative: boolean;
}

function scan(msg: Uint8Array): ScannedMessage {
  const records: RecordInfo[] = [];
  let opt: RecordInfo | undefined;
  const layout = walkRecords(msg, (rr) => {
    records.push(rr);
    if (rr.type === RrType.OPT && rr.section === "additional" && !opt) opt = rr;
  });
  const rcode = layout.header.rcode | (opt ? (opt.ttl >>> 24) << 4 : 0);
  const negative =
    rcode === Rcode.NXDOMAIN || (rcode === Rcode.NOERROR && layout.header.ancount === 0);
  return { layout, records, negative };
}

/** SOA MINIMUM (RFC 2308): the last 32-bit field after MNAME and RNAME. */
function soaMinimum(msg: Uint8Array, rr: RecordInfo): number {
  const pos = skipName(msg, skipName(msg, rr.rdataOffset, rr.end), rr.end);
  if (pos + 20 > rr.end) throw new DnsWireError("bad_rdata", "SOA RDATA cut short", pos);
  return u32(msg, pos + 16);
}

const isNegativeSoa = (m: ScannedMessage, rr: RecordInfo) =>
  m.negative && rr.section === "authority" && rr.type === RrType.SOA;

/**
 * Seconds the message may be cached. Positive answers: the smallest TTL of
 * every record but OPT. Negative answers (NXDOMAIN; NOERROR without answer
 * records = NODATA): min(SOA TTL, SOA MINIMUM) of the authority SOA (RFC 2308),
 * lowered further by any answer record (a CNAME before an NXDOMAIN).
 * undefined when there is nothing to take a TTL from.
 */
export function minTtl(msg: Uint8Array): number | undefined {
  return guarded(() => {
    const m = scan(msg);
    let min: number | undefined;
    const lower = (ttl: number) => {
      if (min === undefined || ttl < min) min = ttl;
    };
    if (m.negative) {
      const soa = m.records.find((rr) => isNegativeSoa(m, rr));
      if (!soa) return undefined;
      lower(Math.min(effectiveTtl(soa.ttl), effectiveTtl(soaMinimum(msg, soa))));
      for (const rr of m.records) if (rr.section === "answer") lower(effectiveTtl(rr.ttl));
      return min;
    }
    for (const rr of m.records) if (rr.type !== RrType.OPT) lower(effectiveTtl(rr.ttl));
    return min;
  });
}

/**
 * A copy with every TTL but OPT's lowered by `ageSeconds` (floored at 0). The
 * authority SOA of a negative answer gets min(TTL, MINIMUM) - age, so minTtl
 * of the aged copy is minTtl of the original minus the age.
 */
export function ageTtls(msg: Uint8Array, ageSeconds: number): Uint8Array<ArrayBuffer> {
  return guarded(() => {
    if (!Number.isFinite(ageSeconds) || ageSeconds < 0) {
      throw new DnsWireError("bad_argument", `age ${ageSeconds} is not a non-negative number`);
    }
    const age = Math.floor(ageSeconds);
    const m = scan(msg);
    const out = copyBytes(msg);
    for (const rr of m.records) {
      if (rr.type === RrType.OPT) continue;
      let ttl = effectiveTtl(rr.ttl);
      if (isNegativeSoa(m, rr)) ttl = Math.min(ttl, effectiveTtl(soaMinimum(msg, rr)));
      writeU32(out, rr.ttlOffset, Math.max(0, ttl - age));
    }
    return out;
  });
}

function sameRrset(msg: Uint8Array, a: RecordInfo, b: RecordInfo): boolean {
  if (a.section !== b.section || a.type !== b.type || a.class !== b.class) return false;
  if (a.type === RrType.OPT) return false;
  return namesEqual(readName(msg, a.offset).wire, readName(msg, b.offset).wire);
}

function headerOnly(msg: Uint8Array, length: number, counts: [number, number, number, number]) {
  const out = copyBytes(msg.subarray(0, length));
  out[2] = out[2]! | 0x02; // TC
  counts.forEach((count, i) => {
    writeU16(out, 4 + 2 * i, count);
  });
  return out;
}

/**
 * Fits a response into `maxSize` bytes. Returns `msg` itself when it fits;
 * otherwise a copy with TC=1 keeping the header, the question and as many
 * whole RRsets as fit in section order (stopping at the first that does not),
 * with the OPT record re-added when the original had one. Counts are fixed up.
 */
export function truncateResponse(msg: Uint8Array, maxSize: number): Uint8Array {
  return guarded(() => {
    if (!Number.isInteger(maxSize) || maxSize < HEADER_SIZE) {
      throw new DnsWireError("bad_argument", `maximum size ${maxSize} is below the 12-byte header`);
    }
    checkSize(msg);
    if (msg.length <= maxSize) return msg;
    const { layout, records } = scan(msg);
    const { header, questionEnd } = layout;
    const optIndex = records.findIndex(
      (rr) => rr.type === RrType.OPT && rr.section === "additional",
    );
    const opt = records[optIndex];
    // OPT's owner is the root (one zero byte), checked here as readEdns does.
    const optLength = opt ? 1 + (opt.end - opt.nameEnd) : 0;
    if (opt && (opt.nameEnd - opt.offset !== 1 || msg[opt.offset] !== 0)) {
      throw new DnsWireError("bad_opt", "OPT owner name is not the root", opt.offset);
    }
    if (questionEnd + optLength > maxSize) {
      // Not even the question and OPT fit: the question alone, or the header alone.
      return questionEnd <= maxSize
        ? headerOnly(msg, questionEnd, [header.qdcount, 0, 0, 0])
        : headerOnly(msg, HEADER_SIZE, [0, 0, 0, 0]);
    }
    let kept = 0;
    let cut = questionEnd;
    while (kept < records.length) {
      let next = kept + 1;
      while (next < records.length && sameRrset(msg, records[kept]!, records[next]!)) next++;
      const end = records[next - 1]!.end;
      const reserve = opt && optIndex >= next ? optLength : 0;
      if (end + reserve > maxSize) break;
      kept = next;
      cut = end;
    }
    const appendOpt = opt !== undefined && optIndex >= kept;
    const out = new Uint8Array(cut + (appendOpt ? optLength : 0));
    out.set(msg.subarray(0, cut));
    if (opt && appendOpt) {
      out[cut] = 0;
      out.set(msg.subarray(opt.nameEnd, opt.end), cut + 1);
    }
    const count = (section: RecordInfo["section"]) =>
      records.slice(0, kept).filter((rr) => rr.section === section).length;
    writeU16(out, 6, count("answer"));
    writeU16(out, 8, count("authority"));
    writeU16(out, 10, count("additional") + (appendOpt ? 1 : 0));
    const dropped = records.length - kept - (appendOpt ? 1 : 0);
    if (dropped > 0) out[2] = out[2]! | 0x02;
    return out;
  });
}

export interface ErrorResponseOptions {
  /** Extended DNS Error (RFC 8914), sent only when the query had EDNS. */
  ede?: { code: number; text?: string };
}

function edeText(text: string | undefined): Uint8Array {
  const bytes = new TextEncoder().encode(text ?? "");
  if (bytes.length <= MAX_EDE_TEXT) return bytes;
  let cut = MAX_EDE_TEXT;
  while (cut > 0 && (bytes[cut]! & 0xc0) === 0x80) cut--; // not inside a UTF-8 sequence
  return bytes.subarray(0, cut);
}

function queryEdns(query: Uint8Array) {
  try {
    const { opt } = findOpt(query);
    return opt ? ednsOf(query, opt) : undefined;
  } catch {
    return undefined; // a malformed OPT: answer without EDNS
  }
}

/**
 * An error response to `query`: ID, opcode, RD, CD and the first question kept;
 * QR=1, RA=1, AA=0; no records. When the query had EDNS the response carries an
 * OPT (UDP size EDNS_UDP_SIZE, DO copied, version 0) with the extended RCODE bits and
 * the EDE option if given. A query whose question cannot be read (but has a
 * header) gets a header-only response with QDCOUNT 0, e.g. for FORMERR.
 * Throws DnsWireError for a query under 12 bytes, for an RCODE outside 0-4095,
 * or for an RCODE above 15 without EDNS to carry it.
 */
export function buildErrorResponse(
  query: Uint8Array,
  rcode: number,
  options: ErrorResponseOptions = {},
): Uint8Array<ArrayBuffer> {
  return guarded(() => {
    if (query.length < HEADER_SIZE) {
      throw new DnsWireError("short_message", `query of ${query.length} bytes has no header`, 0);
    }
    if (!Number.isInteger(rcode) || rcode < 0 || rcode > 0xfff) {
      throw new DnsWireError("bad_argument", `RCODE ${rcode} is not a 12-bit value`);
    }
    const ede = options.ede;
    if (ede && (!Number.isInteger(ede.code) || ede.code < 0 || ede.code > 0xffff)) {
      throw new DnsWireError("bad_argument", `EDE code ${ede.code} is not a 16-bit value`);
    }
    let question: ReturnType<typeof readQuestionWire> | undefined;
    try {
      if (query.length <= MAX_MESSAGE_SIZE) question = readQuestionWire(query);
    } catch {
      question = undefined;
    }
    const edns = question ? queryEdns(query) : undefined;
    if (rcode > 0xf && !edns) {
      throw new DnsWireError("bad_argument", `RCODE ${rcode} needs EDNS, and the query has none`);
    }
    const text = ede && edns ? edeText(ede.text) : undefined;
    const optionLength = text ? 4 + 2 + text.length : 0;
    const optLength = edns ? 11 + optionLength : 0;
    const questionLength = question ? question.wire.length + 4 : 0;
    const out = new Uint8Array(HEADER_SIZE + questionLength + optLength);
    out[0] = query[0]!;
    out[1] = query[1]!;
    // QR, opcode kept, AA=0, TC=0, RD kept | RA=1, Z=0, AD=0, CD kept, RCODE
    out[2] = 0x80 | (query[2]! & 0x78) | (query[2]! & 0x01);
    out[3] = 0x80 | (query[3]! & 0x10) | (rcode & 0xf);
    let pos = HEADER_SIZE;
    if (question) {
      writeU16(out, 4, 1);
      out.set(question.wire, pos);
      pos += question.wire.length;
      writeU16(out, pos, question.type);
      writeU16(out, pos + 2, question.class);
      pos += 4;
    }
    if (edns) {
      writeU16(out, 10, 1);
      out[pos] = 0; // root owner
      writeU16(out, pos + 1, RrType.OPT);
      writeU16(out, pos + 3, EDNS_UDP_SIZE);
      writeU32(out, pos + 5, (((rcode >>> 4) & 0xff) << 24) | (edns.dnssecOk ? 0x8000 : 0));
      writeU16(out, pos + 9, optionLength);
      if (text && ede) {
        writeU16(out, pos + 11, EDE_OPTION_CODE);
        writeU16(out, pos + 13, 2 + text.length);
        writeU16(out, pos + 15, ede.code);
        out.set(text, pos + 17);
      }
    }
    return out;
  });
}
