// Reading DNS messages in place (RFC 1035 §4.1): the header, the question,
// and a record walker that validates every name and length without decoding
// RDATA. The walker is the base of every other wire helper.

import { copyBytes } from "./bytes.ts";
import { namesEqual, readName, readNameText, skipName } from "./names.ts";
import { DnsWireError, guarded } from "./wire-error.ts";

export const MAX_MESSAGE_SIZE = 65535;
/** The UDP payload size we advertise in OPT records we write (DNS flag day 2020). */
export const EDNS_UDP_SIZE = 1232;
export const HEADER_SIZE = 12;
const OPT = 41;

export interface Header {
  id: number;
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  ad: boolean;
  cd: boolean;
  /** The 4-bit header RCODE; see readRcode for the full 12-bit value. */
  rcode: number;
  qdcount: number;
  ancount: number;
  nscount: number;
  arcount: number;
}

export type RecordSection = "answer" | "authority" | "additional";

/** Where one resource record sits in a message. */
export interface RecordInfo {
  section: RecordSection;
  /** Index within its section. */
  index: number;
  /** Offset of the owner name. */
  offset: number;
  /** Offset of the TYPE field (just past the owner name). */
  nameEnd: number;
  type: number;
  class: number;
  /** The TTL field as an unsigned 32-bit number (for OPT: extended RCODE, version, flags). */
  ttl: number;
  /** Offset of the 32-bit TTL field, for rewriting TTLs in place. */
  ttlOffset: number;
  rdataOffset: number;
  rdlength: number;
  /** Offset just past the RDATA. */
  end: number;
}

export interface MessageLayout {
  header: Header;
  /** Offset just past the question section. */
  questionEnd: number;
  /** Offset just past the last record; bytes after it are ignored. */
  end: number;
}

export function checkSize(msg: Uint8Array): void {
  if (msg.length < HEADER_SIZE) {
    throw new DnsWireError("short_message", `message of ${msg.length} bytes has no header`, 0);
  }
  if (msg.length > MAX_MESSAGE_SIZE) {
    throw new DnsWireError(
      "too_large",
      `message of ${msg.length} bytes exceeds 65535`,
      MAX_MESSAGE_SIZE,
    );
  }
}

export const u16 = (msg: Uint8Array, at: number): number => (msg[at]! << 8) | msg[at + 1]!;
export const u32 = (msg: Uint8Array, at: number): number =>
  ((msg[at]! << 24) | (msg[at + 1]! << 16) | (msg[at + 2]! << 8) | msg[at + 3]!) >>> 0;

export function writeU16(msg: Uint8Array, at: number, value: number): void {
  msg[at] = (value >>> 8) & 0xff;
  msg[at + 1] = value & 0xff;
}

export function writeU32(msg: Uint8Array, at: number, value: number): void {
  msg[at] = (value >>> 24) & 0xff;
  msg[at + 1] = (value >>> 16) & 0xff;
  msg[at + 2] = (value >>> 8) & 0xff;
  msg[at + 3] = value & 0xff;
}

function parseHeader(msg: Uint8Array): Header {
  const flags = u16(msg, 2);
  return {
    id: u16(msg, 0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >>> 11) & 0xf,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & 0x0100) !== 0,
    ra: (flags & 0x0080) !== 0,
    ad: (flags & 0x0020) !== 0,
    cd: (flags & 0x0010) !== 0,
    rcode: flags & 0xf,
    qdcount: u16(msg, 4),
    ancount: u16(msg, 6),
    nscount: u16(msg, 8),
    arcount: u16(msg, 10),
  };
}

export function readHeader(msg: Uint8Array): Header {
  checkSize(msg);
  return parseHeader(msg);
}

export function readId(msg: Uint8Array): number {
  checkSize(msg);
  return u16(msg, 0);
}

function checkId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > 0xffff) {
    throw new DnsWireError("bad_argument", `message ID ${id} is not a 16-bit integer`);
  }
}

/** Sets the message ID in place. */
export function setId(msg: Uint8Array, id: number): void {
  checkSize(msg);
  checkId(id);
  writeU16(msg, 0, id);
}

/**
 * A copy of `msg` with another ID, in bytes from `alloc` when given (the
 * relay passes Node's pooled allocator for bytes that only go to a socket).
 */
export function withId(msg: Uint8Array, id: number): Uint8Array<ArrayBuffer>;
export function withId<T extends Uint8Array>(
  msg: Uint8Array,
  id: number,
  alloc: (size: number) => T,
): T;
export function withId(
  msg: Uint8Array,
  id: number,
  alloc?: (size: number) => Uint8Array,
): Uint8Array {
  checkSize(msg);
  checkId(id);
  let copy: Uint8Array;
  if (alloc) {
    copy = alloc(msg.length);
    copy.set(msg);
  } else copy = copyBytes(msg);
  writeU16(copy, 0, id);
  return copy;
}

/** At least a header, at most 65535 bytes, QR=0. */
export function isQuery(msg: Uint8Array): boolean {
  return msg.length >= HEADER_SIZE && msg.length <= MAX_MESSAGE_SIZE && (msg[2]! & 0x80) === 0;
}

/**
 * Validates the whole message and calls `visit` for every resource record in
 * section order: owner names (compression pointers included), question and
 * record bounds, section counts. RDATA stays opaque. Throws DnsWireError on
 * the first defect; errors thrown by `visit` propagate unchanged.
 */
export function walkRecords(msg: Uint8Array, visit?: (rr: RecordInfo) => void): MessageLayout {
  return walk(msg, visit, false).layout;
}

const SECTIONS: readonly RecordSection[] = ["answer", "authority", "additional"];

/**
 * walkRecords' loop. With `findOpt`, it also returns the additional
 * section's OPT record (checked: one at most, owned by the root), building
 * no record object for the others.
 */
function walk(
  msg: Uint8Array,
  visit: ((rr: RecordInfo) => void) | undefined,
  findOpt: boolean,
): { layout: MessageLayout; opt: RecordInfo | undefined } {
  checkSize(msg);
  const header = parseHeader(msg);
  let pos = HEADER_SIZE;
  for (let i = 0; i < header.qdcount; i++) {
    if (pos >= msg.length) {
      throw new DnsWireError("count_mismatch", `QDCOUNT ${header.qdcount} but ${i} questions`, pos);
    }
    pos = skipName(msg, pos);
    if (pos + 4 > msg.length) throw new DnsWireError("truncated_record", "question cut short", pos);
    pos += 4;
  }
  const questionEnd = pos;
  let opt: RecordInfo | undefined;
  for (let s = 0; s < 3; s++) {
    const count = s === 0 ? header.ancount : s === 1 ? header.nscount : header.arcount;
    for (let index = 0; index < count; index++) {
      if (pos >= msg.length) {
        throw new DnsWireError(
          "count_mismatch",
          `${SECTIONS[s]} count ${count} but ${index} records`,
          pos,
        );
      }
      const offset = pos;
      const nameEnd = skipName(msg, pos);
      if (nameEnd + 10 > msg.length) {
        throw new DnsWireError("truncated_record", "record header cut short", nameEnd);
      }
      const rdlength = u16(msg, nameEnd + 8);
      const rdataOffset = nameEnd + 10;
      const end = rdataOffset + rdlength;
      if (end > msg.length) {
        throw new DnsWireError(
          "truncated_record",
          `RDATA of ${rdlength} bytes runs past the end`,
          rdataOffset,
        );
      }
      const isOpt = findOpt && s === 2 && u16(msg, nameEnd) === OPT;
      if (visit || isOpt) {
        const rr: RecordInfo = {
          section: SECTIONS[s]!,
          index,
          offset,
          nameEnd,
          type: u16(msg, nameEnd),
          class: u16(msg, nameEnd + 2),
          ttl: u32(msg, nameEnd + 4),
          ttlOffset: nameEnd + 4,
          rdataOffset,
          rdlength,
          end,
        };
        visit?.(rr);
        if (isOpt) {
          if (opt) throw new DnsWireError("bad_opt", "more than one OPT record", offset);
          if (nameEnd - offset !== 1 || msg[offset] !== 0) {
            throw new DnsWireError("bad_opt", "OPT owner name is not the root", offset);
          }
          opt = rr;
        }
      }
      pos = end;
    }
  }
  return { layout: { header, questionEnd, end: pos }, opt };
}

export interface Question {
  /** Presentation form: lower-cased, trailing dot, escaped (see nameToText). */
  name: string;
  type: number;
  class: number;
  /** Offset just past this question. */
  end: number;
}

/** The first question's uncompressed name (original case), type and class. */
export function readQuestionWire(msg: Uint8Array): {
  wire: Uint8Array;
  type: number;
  class: number;
  end: number;
} {
  checkQuestionCount(msg);
  const { wire, end } = readName(msg, HEADER_SIZE);
  checkQuestionEnd(msg, end);
  return { wire, type: u16(msg, end), class: u16(msg, end + 2), end: end + 4 };
}

function checkQuestionCount(msg: Uint8Array): void {
  checkSize(msg);
  if (u16(msg, 4) === 0) throw new DnsWireError("no_question", "QDCOUNT is 0", 4);
}

/** Type and class follow the name that ends at `nameEnd`. */
function checkQuestionEnd(msg: Uint8Array, nameEnd: number): void {
  if (nameEnd + 4 > msg.length) {
    throw new DnsWireError("truncated_record", "question cut short", nameEnd);
  }
}

/** The first question. Checks only the header and that question, not the rest. */
export function readQuestion(msg: Uint8Array): Question {
  return guarded(() => {
    // No copy of the name: its text is all a Question keeps.
    checkQuestionCount(msg);
    const { text, end } = readNameText(msg, HEADER_SIZE);
    checkQuestionEnd(msg, end);
    return { name: text, type: u16(msg, end), class: u16(msg, end + 2), end: end + 4 };
  });
}

/** Whether both messages ask the same first question; false when either is malformed. */
export function sameQuestion(a: Uint8Array, b: Uint8Array): boolean {
  const fast = sameUncompressedQuestion(a, b);
  if (fast !== undefined) return fast;
  try {
    const qa = readQuestionWire(a);
    const qb = readQuestionWire(b);
    return qa.type === qb.type && qa.class === qb.class && namesEqual(qa.wire, qb.wire);
  } catch {
    return false;
  }
}

/**
 * The per-answer fast path: both first questions uncompressed (as they
 * always are at offset 12), compared in place without copying names.
 * Undefined when either needs the full walk (a pointer, a cut-short message).
 */
function sameUncompressedQuestion(a: Uint8Array, b: Uint8Array): boolean | undefined {
  if (a.length < HEADER_SIZE + 5 || b.length < HEADER_SIZE + 5) return undefined;
  if (u16(a, 4) === 0 || u16(b, 4) === 0) return undefined;
  let pos = HEADER_SIZE;
  for (;;) {
    const len = a[pos];
    const other = b[pos];
    if (len === undefined || other === undefined || len > 63 || other > 63) return undefined;
    if (len !== other) return false;
    if (len === 0) break;
    if (pos + len + 1 > a.length || pos + len + 1 > b.length) return undefined;
    for (let i = pos + 1; i <= pos + len; i++) {
      const x = a[i]!;
      const y = b[i]!;
      if (x === y) continue;
      const lower = x | 0x20;
      if (lower !== (y | 0x20) || lower < 0x61 || lower > 0x7a) return false;
    }
    pos += len + 1;
    if (pos - HEADER_SIZE > 255) return undefined;
  }
  pos++;
  if (pos + 4 > a.length || pos + 4 > b.length) return undefined;
  return u16(a, pos) === u16(b, pos) && u16(a, pos + 2) === u16(b, pos + 2);
}

export interface EdnsOption {
  code: number;
  data: Uint8Array;
}

export interface Edns {
  udpSize: number;
  /** The upper 8 bits of the 12-bit RCODE. */
  extendedRcode: number;
  version: number;
  dnssecOk: boolean;
  options: EdnsOption[];
}

/** The OPT record of the additional section, if any, with the whole message validated. */
export function findOpt(msg: Uint8Array): { layout: MessageLayout; opt: RecordInfo | undefined } {
  return walk(msg, undefined, true);
}

function parseOptions(msg: Uint8Array, opt: RecordInfo): EdnsOption[] {
  const options: EdnsOption[] = [];
  let pos = opt.rdataOffset;
  // each option takes at least 4 bytes of a bounded RDATA
  while (pos < opt.end) {
    if (pos + 4 > opt.end) throw new DnsWireError("bad_opt", "option header cut short", pos);
    const length = u16(msg, pos + 2);
    if (pos + 4 + length > opt.end) {
      throw new DnsWireError("bad_opt", `option length ${length} runs past the OPT RDATA`, pos);
    }
    options.push({ code: u16(msg, pos), data: copyBytes(msg.subarray(pos + 4, pos + 4 + length)) });
    pos += 4 + length;
  }
  return options;
}

export function ednsOf(msg: Uint8Array, opt: RecordInfo): Edns {
  return {
    udpSize: opt.class,
    extendedRcode: opt.ttl >>> 24,
    version: (opt.ttl >>> 16) & 0xff,
    dnssecOk: (opt.ttl & 0x8000) !== 0,
    options: parseOptions(msg, opt),
  };
}

/** EDNS parameters from the OPT record; undefined when there is none. */
export function readEdns(msg: Uint8Array): Edns | undefined {
  return guarded(() => {
    const { opt } = findOpt(msg);
    return opt ? ednsOf(msg, opt) : undefined;
  });
}

/** The full 12-bit RCODE: header RCODE plus the OPT extended RCODE shifted left by 4. */
export function readRcode(msg: Uint8Array): number {
  return guarded(() => {
    const { layout, opt } = findOpt(msg);
    return layout.header.rcode | (opt ? (opt.ttl >>> 24) << 4 : 0);
  });
}
