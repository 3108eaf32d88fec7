// Compiled block lists: built offline (`npm run blocklist -- build`), loaded
// without parsing in both runtimes. The file is an xor filter (Graf and
// Lemire, 2019) of the listed names with 32-bit fingerprints: three blocks of
// 32-bit words, about 1.23 words (4.9 bytes) per name. A lookup hashes every
// suffix of the asked name in one pass from the right and probes three words
// per suffix; it allocates nothing.
//
// Exact for listed names (never a false negative). A name not listed matches
// by chance with probability 2^-32 per suffix probed: about one in 860
// million for a name of five labels.
//
// Layout, little-endian:
//   0  magic "DOHEDGBL"      8 bytes
//   8  format version        u32 (1)
//  12  names                 u32
//  16  seed                  u32
//  20  block length          u32 (words per block)
//  24  checksum              u32 over the header fields and the words
//  28  label depths          u16 fewest, u16 most labels of a listed name
//  32  words                 u32 × 3 × block length

import { copyBytes } from "../dns/bytes.ts";
import { DohEdgeError } from "../errors.ts";
import { normalizeName } from "./suffix-set.ts";

/** What the policy asks of a block list, compiled or not. */
export interface NameMatcher {
  /** Whether `name` (normalized: lower case, no trailing dot) or one of its parents is listed. */
  matches(name: string): boolean;
  readonly size: number;
}

/** One matcher over several lists: a name is listed when any of them lists it. */
export function unionMatchers(matchers: readonly NameMatcher[]): NameMatcher {
  const nonEmpty = matchers.filter((m) => m.size > 0);
  if (nonEmpty.length === 1) return nonEmpty[0]!;
  return {
    matches: (name) => nonEmpty.some((m) => m.matches(name)),
    // A getter: a list can leave later (the worker drops a corrupt one).
    get size() {
      return nonEmpty.reduce((sum, m) => sum + m.size, 0);
    },
  };
}

export class CompiledListError extends DohEdgeError {
  override readonly name = "CompiledListError";
  readonly code = "bad_compiled_list";
}

export const COMPILED_LIST_VERSION = 1;
const MAGIC = [0x44, 0x4f, 0x48, 0x45, 0x44, 0x47, 0x42, 0x4c]; // "DOHEDGBL"
const HEADER_BYTES = 32;
const MAX_SEED_TRIES = 64;

/** Whether `bytes` start like a compiled list (any version): text lists never do. */
export function isCompiledList(bytes: Uint8Array): boolean {
  if (bytes.length < MAGIC.length) return false;
  for (let i = 0; i < MAGIC.length; i++) if (bytes[i] !== MAGIC[i]) return false;
  return true;
}

// ── hashing ───────────────────────────────────────────────────────────

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A 32-bit value mapped onto [0, n) without division bias worth the name. */
const reduce = (x: number, n: number) => Math.floor((x * n) / 4294967296);

/** Keys of `name`'s every suffix, rightmost label first: two 32-bit lanes each. */
interface SuffixKeys {
  a: number;
  b: number;
}

/**
 * Walks `name`'s suffixes from the right ("com", "example.com", ...), calling
 * `visit` with each suffix's two hash lanes; stops when it returns true.
 * ASCII letters hash without case.
 */
function walkSuffixes(
  name: string,
  state: SuffixKeys,
  visit: () => boolean,
  fewest = 1,
  most = 127,
): boolean {
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  let end = name.length;
  let labels = 0;
  if (end > 0 && name.charCodeAt(end - 1) === 0x2e) end--;
  while (end > 0 && labels < most) {
    const start = name.lastIndexOf(".", end - 1) + 1;
    for (let i = start; i < end; i++) {
      let c = name.charCodeAt(i);
      if (c >= 0x41 && c <= 0x5a) c += 0x20;
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995);
      b ^= b >>> 13;
    }
    a = Math.imul(a ^ 0x2e, 0x01000193);
    b = Math.imul(b ^ 0x2e, 0x5bd1e995);
    b ^= b >>> 13;
    labels++;
    state.a = a >>> 0;
    state.b = b >>> 0;
    if (labels >= fewest && visit()) return true;
    end = start - 1;
  }
  return false;
}

/** The filter's view of one key under `seed`: three positions and a fingerprint. */
function place(a: number, b: number, seed: number, blockLength: number, out: Int32Array): number {
  const h1 = fmix32(a ^ seed);
  const h2 = fmix32(b ^ Math.imul(seed, 0x9e3779b1));
  const h3 = fmix32((h1 + h2) ^ 0x5bd1e995);
  out[0] = reduce(h1, blockLength);
  out[1] = blockLength + reduce(h2, blockLength);
  out[2] = 2 * blockLength + reduce(h3, blockLength);
  return fmix32(h1 ^ ((h2 << 16) | (h2 >>> 16)) ^ h3) | 0;
}

function checksum(header: readonly number[], words: Uint32Array): number {
  const steps = checksumSteps(header, words, words.length);
  let step = steps.next();
  while (!step.done) step = steps.next();
  return step.value;
}

/** The checksum (FNV-1a over the header fields and the words), pausing every `wordsPerStep` words. */
function* checksumSteps(
  header: readonly number[],
  words: Uint32Array,
  wordsPerStep: number,
): Generator<void, number, void> {
  let h = 0x811c9dc5;
  for (const field of header) h = Math.imul(h ^ field, 0x01000193);
  for (let start = 0; start < words.length; start += wordsPerStep) {
    if (start > 0) yield;
    const end = Math.min(words.length, start + wordsPerStep);
    for (let i = start; i < end; i++) h = Math.imul(h ^ words[i]!, 0x01000193);
  }
  return h >>> 0;
}

// ── building ──────────────────────────────────────────────────────────

export interface BuildStats {
  /** Names in the filter. */
  names: number;
  duplicates: number;
  /** Names dropped because a listed parent covers them. */
  covered: number;
}

/**
 * The distinct names of `input` (normalized) that no other listed name
 * covers: "a.ads.example" goes when "ads.example" is listed.
 */
export function coverNames(input: Iterable<string>): { names: string[]; stats: BuildStats } {
  const all = new Set<string>();
  let total = 0;
  for (const raw of input) {
    total++;
    const name = normalizeName(raw);
    if (name !== "") all.add(name);
  }
  const names: string[] = [];
  let covered = 0;
  for (const name of all) {
    let dot = name.indexOf(".");
    let isCovered = false;
    while (dot >= 0) {
      if (all.has(name.slice(dot + 1))) {
        isCovered = true;
        break;
      }
      dot = name.indexOf(".", dot + 1);
    }
    if (isCovered) covered++;
    else names.push(name);
  }
  return { names, stats: { names: names.length, duplicates: total - all.size, covered } };
}

/** The compiled list file for `input` (deduplicated and covered names dropped first). */
export function buildCompiledList(input: Iterable<string>): {
  bytes: Uint8Array<ArrayBuffer>;
  stats: BuildStats;
} {
  const { names, stats } = coverNames(input);
  const n = names.length;
  const keysA = new Uint32Array(n);
  const keysB = new Uint32Array(n);
  const state: SuffixKeys = { a: 0, b: 0 };
  let fewest = n > 0 ? 127 : 0;
  let most = 0;
  names.forEach((name, i) => {
    const labels = name.split(".").length;
    fewest = Math.min(fewest, labels);
    most = Math.max(most, labels);
    walkSuffixes(name, state, () => false);
    keysA[i] = state.a;
    keysB[i] = state.b;
  });
  const depths = (most << 16) | fewest;
  const blockLength = Math.max(1, Math.ceil((1.23 * n + 32) / 3));
  for (let attempt = 0; attempt < MAX_SEED_TRIES; attempt++) {
    const seed = fmix32(0x2545f491 + attempt * 0x9e3779b9);
    const words = solve(keysA, keysB, seed, blockLength);
    if (words) return { bytes: encode(n, seed, blockLength, depths, words), stats };
  }
  throw new CompiledListError(
    `compiled block list: no filter found after ${MAX_SEED_TRIES} seeds (two names hash alike)`,
  );
}

/** The xor filter's words for these keys, or undefined when peeling fails for this seed. */
function solve(
  keysA: Uint32Array,
  keysB: Uint32Array,
  seed: number,
  blockLength: number,
): Uint32Array | undefined {
  const n = keysA.length;
  const size = 3 * blockLength;
  const counts = new Uint32Array(size);
  const xorKeys = new Uint32Array(size); // xor of the key indexes that touch a word
  const fingerprints = new Int32Array(n);
  const positions = new Int32Array(3 * n);
  const at = new Int32Array(3);
  for (let k = 0; k < n; k++) {
    fingerprints[k] = place(keysA[k]!, keysB[k]!, seed, blockLength, at);
    for (let j = 0; j < 3; j++) {
      const p = at[j]!;
      positions[3 * k + j] = p;
      counts[p]!++;
      xorKeys[p]! ^= k;
    }
  }
  // Peel: a word touched by one key alone is that key's to set.
  const queue = new Int32Array(size);
  let head = 0;
  let tail = 0;
  for (let p = 0; p < size; p++) if (counts[p] === 1) queue[tail++] = p;
  const order = new Int32Array(n); // keys in peeling order
  const owned = new Int32Array(n); // the word each key sets
  let peeled = 0;
  while (head < tail) {
    const p = queue[head++]!;
    if (counts[p] !== 1) continue;
    const k = xorKeys[p]!;
    order[peeled] = k;
    owned[peeled] = p;
    peeled++;
    for (let j = 0; j < 3; j++) {
      const q = positions[3 * k + j]!;
      counts[q]!--;
      xorKeys[q]! ^= k;
      if (counts[q] === 1) queue[tail++] = q;
    }
  }
  if (peeled !== n) return undefined;
  const words = new Uint32Array(size);
  for (let i = n - 1; i >= 0; i--) {
    const k = order[i]!;
    const p = owned[i]!;
    words[p] =
      fingerprints[k]! ^
      words[positions[3 * k]!]! ^
      words[positions[3 * k + 1]!]! ^
      words[positions[3 * k + 2]!]!;
  }
  return words;
}

function encode(
  n: number,
  seed: number,
  blockLength: number,
  depths: number,
  words: Uint32Array,
): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(HEADER_BYTES + words.length * 4);
  const view = new DataView(bytes.buffer);
  bytes.set(MAGIC, 0);
  view.setUint32(8, COMPILED_LIST_VERSION, true);
  view.setUint32(12, n, true);
  view.setUint32(16, seed, true);
  view.setUint32(20, blockLength, true);
  view.setUint32(24, checksum([COMPILED_LIST_VERSION, n, seed, blockLength, depths], words), true);
  view.setUint32(28, depths, true);
  for (let i = 0; i < words.length; i++) view.setUint32(HEADER_BYTES + 4 * i, words[i]!, true);
  return bytes;
}

// ── loading ───────────────────────────────────────────────────────────

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * A matcher over a compiled list's bytes, checked (magic, version, length,
 * checksum) but not parsed: the words are read in place where they are
 * 4-byte aligned. Throws CompiledListError with one line saying what is wrong.
 */
export function openCompiledList(bytes: Uint8Array): NameMatcher {
  const opened = openCompiledListUnverified(bytes);
  const steps = opened.verify(Number.MAX_SAFE_INTEGER);
  while (!steps.next().done) {
    // one step: the whole checksum
  }
  return opened.matcher;
}

/** A compiled list opened before its checksum is checked, and the check. */
export interface UnverifiedList {
  readonly matcher: NameMatcher;
  /**
   * The checksum check, pausing (yielding) every `wordsPerStep` words: run
   * it to its end. The last step throws CompiledListError on a mismatch.
   */
  verify(wordsPerStep: number): Generator<void, void, void>;
}

/**
 * Like openCompiledList, with every check but the checksum done now: the
 * matcher answers at once, and the caller runs `verify` (the worker does it
 * in slices between queries) and stops using the matcher if it throws.
 */
export function openCompiledListUnverified(bytes: Uint8Array): UnverifiedList {
  const fail = (why: string) => new CompiledListError(`compiled block list: ${why}`);
  if (!isCompiledList(bytes)) throw fail("not a compiled list (wrong magic bytes)");
  if (bytes.length < HEADER_BYTES) throw fail(`truncated (${bytes.length} bytes, no full header)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== COMPILED_LIST_VERSION) {
    throw fail(`format version ${version}; this build reads version ${COMPILED_LIST_VERSION}`);
  }
  const n = view.getUint32(12, true);
  const seed = view.getUint32(16, true);
  const blockLength = view.getUint32(20, true);
  const depths = view.getUint32(28, true);
  const fewest = depths & 0xffff;
  const most = depths >>> 16;
  const expected = HEADER_BYTES + 12 * blockLength;
  if (bytes.length !== expected) {
    throw fail(
      bytes.length < expected
        ? `truncated (${bytes.length} bytes of ${expected})`
        : `${bytes.length - expected} bytes past the end of the filter`,
    );
  }
  if (blockLength === 0 || n > 3 * blockLength) throw fail("header does not describe a filter");
  if (!LITTLE_ENDIAN) throw fail("big-endian hosts cannot read it in place");
  const offset = bytes.byteOffset + HEADER_BYTES;
  const words =
    offset % 4 === 0
      ? new Uint32Array(bytes.buffer, offset, 3 * blockLength)
      : new Uint32Array(copyBytes(bytes.subarray(HEADER_BYTES)).buffer);
  const stored = view.getUint32(24, true);
  const state: SuffixKeys = { a: 0, b: 0 };
  const at = new Int32Array(3);
  const probe = () => {
    const fingerprint = place(state.a, state.b, seed, blockLength, at);
    return (fingerprint ^ words[at[0]!]! ^ words[at[1]!]! ^ words[at[2]!]!) === 0;
  };
  return {
    matcher: {
      matches: (name) => n > 0 && walkSuffixes(name, state, probe, fewest, most),
      size: n,
    },
    *verify(wordsPerStep) {
      const header = [version, n, seed, blockLength, depths];
      const sum = yield* checksumSteps(header, words, Math.max(1, wordsPerStep));
      if (sum !== stored) throw fail("checksum mismatch (the file is corrupt)");
    },
  };
}
