// HPACK (RFC 7541) for a DoH client: a full decoder, since a server may use
// every representation, its dynamic table and Huffman coding, and encoding
// of the few request fields as literals that are never indexed by us (no
// encoder table, so nothing to keep in step with the server's settings).

import { Buffer } from "node:buffer";
import { huffmanDecode } from "./huffman.ts";

/** RFC 7541 Appendix A: index 1–61 (the entry at 0 is a placeholder). */
const STATIC: readonly (readonly [string, string])[] = [
  ["", ""],
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

/** Static table indexes of the names a request uses. */
export const NAME = {
  authority: 1,
  path: 4,
  contentLength: 28,
  contentType: 31,
  accept: 19,
} as const;
/** Indexed fields (RFC 7541 §6.1) for whole static entries. */
export const INDEXED = { get: 0x82, post: 0x83, https: 0x87 } as const;

export class HpackError extends Error {}

/** The response fields a DoH client reads; the rest are decoded and dropped. */
export interface ResponseFields {
  status: number;
  contentType: string;
}

/** One peer's header blocks, in order: the dynamic table lives across them. */
export interface HpackDecoder {
  decode(block: Uint8Array): ResponseFields;
}

/**
 * A decoder whose dynamic table may hold up to `maxTableSize` octets (our
 * SETTINGS_HEADER_TABLE_SIZE; 4096 unless we advertise otherwise).
 */
export function createHpackDecoder(maxTableSize = 4096): HpackDecoder {
  return new Decoder(maxTableSize);
}

class Decoder implements HpackDecoder {
  /** Newest first. */
  private readonly table: [string, string][] = [];
  private size = 0;
  private limit: number;
  private pos = 0;
  private block: Uint8Array = new Uint8Array(0);

  private readonly maxTableSize: number;

  constructor(maxTableSize: number) {
    this.maxTableSize = maxTableSize;
    this.limit = maxTableSize;
  }

  decode(input: Uint8Array): ResponseFields {
    this.block = input;
    this.pos = 0;
    const fields: ResponseFields = { status: 0, contentType: "" };
    let sawField = false;
    while (this.pos < input.length) {
      const byte = input[this.pos]!;
      let field: readonly [string, string];
      if (byte & 0x80) {
        field = this.entry(this.integer(7));
      } else if (byte & 0x40) {
        const added = this.literal(6);
        this.table.unshift(added);
        this.size += added[0].length + added[1].length + 32;
        this.evict();
        field = added;
      } else if (byte & 0x20) {
        // A table size update comes before the first field of a block (§4.2).
        const next = this.integer(5);
        if (sawField || next > this.maxTableSize) throw new HpackError("bad table size update");
        this.limit = next;
        this.evict();
        continue;
      } else {
        field = this.literal(4);
      }
      sawField = true;
      if (field[0] === ":status") fields.status = Number(field[1]);
      else if (field[0] === "content-type") fields.contentType = field[1];
    }
    return fields;
  }

  private evict() {
    while (this.size > this.limit && this.table.length > 0) {
      const [name, value] = this.table.pop()!;
      this.size -= name.length + value.length + 32;
    }
  }

  private integer(prefixBits: number): number {
    const { block } = this;
    const max = (1 << prefixBits) - 1;
    let value = block[this.pos++]! & max;
    if (value < max) return value;
    for (let shift = 0; ; shift += 7) {
      if (this.pos >= block.length || shift > 21) throw new HpackError("bad integer");
      const byte = block[this.pos++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
    }
  }

  private string(): string {
    const { block } = this;
    if (this.pos >= block.length) throw new HpackError("truncated string");
    const huffman = (block[this.pos]! & 0x80) !== 0;
    const length = this.integer(7);
    if (this.pos + length > block.length) throw new HpackError("truncated string");
    const raw = block.subarray(this.pos, this.pos + length);
    this.pos += length;
    if (!huffman) return Buffer.from(raw.buffer, raw.byteOffset, raw.length).toString("latin1");
    const text = huffmanDecode(raw);
    if (text === undefined) throw new HpackError("bad Huffman coding");
    return text;
  }

  private entry(index: number): readonly [string, string] {
    if (index > 0 && index < STATIC.length) return STATIC[index]!;
    const dynamic = this.table[index - STATIC.length];
    if (!dynamic) throw new HpackError(`no table entry ${index}`);
    return dynamic;
  }

  /** A literal field (RFC 7541 §6.2): name by index or literal, then the value. */
  private literal(prefixBits: number): [string, string] {
    const index = this.integer(prefixBits);
    const name = index === 0 ? this.string() : this.entry(index)[0];
    return [name, this.string()];
  }
}

/** Bytes of an HPACK integer with a `prefixBits`-bit prefix. */
function integerLength(prefixBits: number, value: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) return 1;
  let n = 2;
  for (let rest = value - max; rest >= 0x80; rest >>>= 7) n++;
  return n;
}

/** Writes an HPACK integer at `at` (its first octet's other bits are 0); returns the end. */
function writeInteger(out: Uint8Array, at: number, prefixBits: number, value: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out[at] = value;
    return at + 1;
  }
  out[at++] = max;
  let rest = value - max;
  while (rest >= 0x80) {
    out[at++] = (rest & 0x7f) | 0x80;
    rest >>>= 7;
  }
  out[at] = rest;
  return at + 1;
}

/**
 * A literal field without indexing (RFC 7541 §6.2.2), its name from the
 * static table and its value as raw octets (`value` is ASCII), in one buffer.
 */
export function literalField(nameIndex: number, value: string): Buffer {
  const head = integerLength(4, nameIndex) + integerLength(7, value.length);
  const out = Buffer.allocUnsafe(head + value.length);
  const at = writeInteger(out, writeInteger(out, 0, 4, nameIndex), 7, value.length);
  out.write(value, at, "latin1");
  return out;
}
