// QPACK (RFC 9204) with the static table only: we advertise a dynamic table
// capacity of 0, so every field section we receive must have a Required
// Insert Count of 0 and reference nothing dynamic (§2.2.1: a decoding error,
// QPACK_DECOMPRESSION_FAILED). We encode with static references and plain
// literals; we decode static references and literals, Huffman-coded or not
// (RFC 7541 §5.2, Appendix B).

import { H3_ERROR, H3FrameError } from "./frames.ts";
import { HUFFMAN_CODES, STATIC_TABLE } from "./qpack-tables.ts";

export type HeaderField = readonly [name: string, value: string];

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

const exact = new Map<string, number>();
const byName = new Map<string, number>();
STATIC_TABLE.forEach(([name, value], index) => {
  if (!exact.has(`${name}\0${value}`)) exact.set(`${name}\0${value}`, index);
  if (!byName.has(name)) byName.set(name, index);
});

const failed = (why: string) => new H3FrameError(H3_ERROR.qpackDecompressionFailed, why);

/** An integer with an N-bit prefix (RFC 7541 §5.1); `flags` fills the bits above it. */
function pushInteger(out: number[], flags: number, prefixBits: number, value: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(flags | value);
    return;
  }
  out.push(flags | max);
  let rest = value - max;
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
}

function pushString(out: number[], flags: number, prefixBits: number, text: string): void {
  const bytes = encoder.encode(text);
  pushInteger(out, flags, prefixBits, bytes.length);
  for (const b of bytes) out.push(b);
}

/** A field section: static references where the table has them, literals otherwise (no Huffman). */
export function encodeFieldSection(fields: readonly HeaderField[]): Uint8Array {
  // Required Insert Count 0, Delta Base 0 (§4.5.1).
  const out: number[] = [0x00, 0x00];
  for (const [name, value] of fields) {
    const whole = exact.get(`${name}\0${value}`);
    const named = byName.get(name);
    if (whole !== undefined) {
      pushInteger(out, 0b1100_0000, 6, whole); // Indexed field line, static (§4.5.2)
    } else if (named !== undefined) {
      pushInteger(out, 0b0101_0000, 4, named); // Literal with name reference, static (§4.5.4)
      pushString(out, 0, 7, value);
    } else {
      pushString(out, 0b0010_0000, 3, name); // Literal with literal name (§4.5.6)
      pushString(out, 0, 7, value);
    }
  }
  return Uint8Array.from(out);
}

/** Walks a field section's bytes. */
class Cursor {
  at = 0;
  readonly bytes: Uint8Array;
  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }

  integer(prefixBits: number): number {
    const max = (1 << prefixBits) - 1;
    const first = this.bytes[this.at++];
    if (first === undefined) throw failed("truncated integer");
    let value = first & max;
    if (value < max) return value;
    for (let shift = 1; ; shift *= 0x80) {
      const b = this.bytes[this.at++];
      if (b === undefined) throw failed("truncated integer");
      value += (b & 0x7f) * shift;
      if (value > 0xffffffff) throw failed("integer too large");
      if ((b & 0x80) === 0) return value;
    }
  }

  /** A string literal whose length has an N-bit prefix and the Huffman flag just above it. */
  string(prefixBits: number): string {
    const huffman = ((this.bytes[this.at] ?? 0) & (1 << prefixBits)) !== 0;
    const length = this.integer(prefixBits);
    if (this.at + length > this.bytes.length) throw failed("truncated string");
    const raw = this.bytes.subarray(this.at, this.at + length);
    this.at += length;
    return huffman ? huffmanDecode(raw) : latin1.decode(raw);
  }
}

function staticEntry(index: number): readonly [string, string] {
  const entry = STATIC_TABLE[index];
  if (!entry) throw failed(`static index ${index} out of range`);
  return entry;
}

/**
 * A field section as [name, value] pairs, in order. Throws H3FrameError
 * (QPACK_DECOMPRESSION_FAILED) for anything that needs a dynamic table.
 */
export function decodeFieldSection(bytes: Uint8Array, maxSize = 16_384): HeaderField[] {
  const cursor = new Cursor(bytes);
  if (cursor.integer(8) !== 0) throw failed("a dynamic table reference (Required Insert Count)");
  cursor.integer(7); // Sign and Delta Base: meaningless without a dynamic table.
  const fields: HeaderField[] = [];
  let size = 0;
  while (cursor.at < bytes.length) {
    const first = bytes[cursor.at] as number;
    let field: HeaderField;
    if (first & 0x80) {
      if (!(first & 0x40)) throw failed("a dynamic table reference");
      field = staticEntry(cursor.integer(6));
    } else if (first & 0x40) {
      if (!(first & 0x10)) throw failed("a dynamic table reference");
      const [name] = staticEntry(cursor.integer(4));
      field = [name, cursor.string(7)];
    } else if (first & 0x20) {
      const name = cursor.string(3);
      field = [name, cursor.string(7)];
    } else {
      throw failed("a post-base (dynamic) reference");
    }
    // The size HTTP counts a field as (RFC 9114 §4.2.2).
    size += field[0].length + field[1].length + 32;
    if (size > maxSize) throw failed("field section too large");
    fields.push(field);
  }
  return fields;
}

/** The Huffman code as a tree in a flat array: node*2 (+1 for a 1 bit) → child, or ~symbol at a leaf. */
const tree: number[] = [0, 0];
for (let symbol = 0; symbol < 256; symbol++) {
  const code = HUFFMAN_CODES[symbol * 2] as number;
  const bits = HUFFMAN_CODES[symbol * 2 + 1] as number;
  let node = 0;
  for (let i = bits - 1; i >= 0; i--) {
    const slot = node * 2 + ((code >>> i) & 1);
    if (i === 0) {
      tree[slot] = ~symbol;
    } else {
      if (!tree[slot]) {
        tree[slot] = tree.length / 2;
        tree.push(0, 0);
      }
      node = tree[slot] as number;
    }
  }
}

/** RFC 7541 §5.2: padding is at most 7 bits, all ones; EOS inside a string is an error. */
export function huffmanDecode(bytes: Uint8Array): string {
  const out: number[] = [];
  let node = 0;
  let depth = 0;
  let allOnes = true;
  for (const byte of bytes) {
    for (let i = 7; i >= 0; i--) {
      const bit = (byte >> i) & 1;
      const next = tree[node * 2 + bit] as number;
      depth++;
      allOnes &&= bit === 1;
      if (next < 0) {
        out.push(~next);
        node = 0;
        depth = 0;
        allOnes = true;
      } else if (next === 0) {
        throw failed("invalid Huffman code (EOS)");
      } else {
        node = next;
      }
    }
  }
  if (depth > 7 || !allOnes) throw failed("invalid Huffman padding");
  return latin1.decode(Uint8Array.from(out));
}
