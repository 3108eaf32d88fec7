// HPACK's Huffman code (RFC 7541 §5.2, Appendix B), decoding only: servers
// may Huffman-encode any header string, and the decoder must read them all
// to keep its dynamic table in step. The code is canonical (codes of one
// length are consecutive, assigned in symbol order, shorter lengths first),
// so the code lengths alone define it; they are Appendix B's "len" column.

/** Code length in bits of symbols 0–255 and EOS (256), from RFC 7541 Appendix B. */
const LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
  28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5,
  6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6,
  7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23,
  23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22,
  22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22,
  23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27,
  27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25,
  24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

const EOS = 256;
const MAX_BITS = 30;

interface Canonical {
  /** First code of each length. */
  first: Int32Array;
  /** Number of codes of each length. */
  count: Int32Array;
  /** Index into `symbols` of each length's first code. */
  offset: Int32Array;
  /** Symbols sorted by (length, symbol). */
  symbols: Uint16Array;
}

function build(): Canonical {
  const count = new Int32Array(MAX_BITS + 1);
  for (const length of LENGTHS) count[length]!++;
  const first = new Int32Array(MAX_BITS + 1);
  const offset = new Int32Array(MAX_BITS + 1);
  let code = 0;
  let index = 0;
  for (let length = 1; length <= MAX_BITS; length++) {
    first[length] = code;
    offset[length] = index;
    code = (code + count[length]!) << 1;
    index += count[length]!;
  }
  const order = LENGTHS.map((_, symbol) => symbol).sort(
    (a, b) => LENGTHS[a]! - LENGTHS[b]! || a - b,
  );
  return { first, count, offset, symbols: Uint16Array.from(order) };
}

const TABLE = build();

/**
 * The bytes Huffman-coded in `input` (as a latin1 string, one char per
 * octet), or undefined when the coding is invalid: EOS inside the string,
 * or padding longer than 7 bits or not all ones (RFC 7541 §5.2).
 */
export function huffmanDecode(input: Uint8Array): string | undefined {
  const { first, count, offset, symbols } = TABLE;
  let out = "";
  let code = 0;
  let length = 0;
  for (let i = 0; i < input.length; i++) {
    const byte = input[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      code = (code << 1) | ((byte >> bit) & 1);
      length++;
      const index = code - first[length]!;
      if (index < count[length]!) {
        const symbol = symbols[offset[length]! + index]!;
        if (symbol === EOS) return undefined;
        out += String.fromCharCode(symbol);
        code = 0;
        length = 0;
      } else if (length === MAX_BITS) {
        return undefined;
      }
    }
  }
  // What is left must be a prefix of EOS (all ones), shorter than a byte.
  if (length > 7 || code !== (1 << length) - 1) return undefined;
  return out;
}
