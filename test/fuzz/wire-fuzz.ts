// Mutation fuzzing of the DNS wire helpers, runtime-neutral (it also runs in
// workerd). Inputs start from real captured messages and the malformed
// corpus and are mutated the ways broken or hostile peers break messages:
// bit flips, byte changes, insertions, deletions, truncation, splices of two
// messages, huge section counts, and compression pointers aimed anywhere.
// A crash is any error other than DnsWireError; a hang is one input taking
// longer than `hangMs` through every helper.
//
// Jazzer.js (coverage-guided) cannot run here: 4.0.0's prebuilt fuzzer needs
// glibc 2.38 (Debian 12 has 2.36) and older releases download their binary
// from GitHub at install. This is the bounded substitute `npm run fuzz` runs.

import { decodeMessage } from "../../shared/dns/codec.ts";
import {
  forUpstream,
  fromUpstream,
  padAnswerFor,
  rewriteOptions,
} from "../../shared/dns/edns-options.ts";
import { createFrameReader } from "../../shared/dns/framing.ts";
import {
  ageTtls,
  buildErrorResponse,
  DnsWireError,
  minTtl,
  Rcode,
  readEdns,
  readHeader,
  readId,
  readQuestion,
  readRcode,
  sameQuestion,
  truncateResponse,
  walkRecords,
} from "../../shared/dns/wire.ts";
import { createSeededRandom, type Random, randomIndex } from "../../shared/engine/random.ts";
import { malformed } from "../fixtures/malformed/corpus.ts";
import { captured } from "../fixtures/packets/captured.ts";

/** Every wire helper that reads untrusted bytes. */
export const WIRE_TARGETS: readonly ((msg: Uint8Array) => unknown)[] = [
  readHeader,
  readId,
  readQuestion,
  (m) => sameQuestion(m, m),
  readEdns,
  readRcode,
  (m) => walkRecords(m),
  (m) => buildErrorResponse(m, Rcode.SERVFAIL, { ede: { code: 23, text: "x" } }),
  (m) => truncateResponse(m, 512),
  (m) => truncateResponse(m, 40),
  minTtl,
  (m) => ageTtls(m, 17),
  forUpstream,
  // It rewrites the answer in place: a copy, so the targets after it see the input.
  (m) => fromUpstream(m.slice()),
  (m) => rewriteOptions(m, () => true, 128),
  (m) => padAnswerFor(m, m),
  decodeMessage,
  (m) => {
    // As a TCP stream: framed as-is, so its first two bytes are read as a length.
    const reader = createFrameReader();
    reader.push(m.subarray(0, m.length >> 1));
    return reader.push(m.subarray(m.length >> 1));
  },
];

/** Runs every target on `msg`; returns the first error that is not a DnsWireError. */
export function crashOf(msg: Uint8Array): unknown {
  for (const target of WIRE_TARGETS) {
    try {
      target(msg);
    } catch (error) {
      if (!(error instanceof DnsWireError)) return error;
    }
  }
  return undefined;
}

export const SEEDS: readonly Uint8Array[] = [
  ...captured.flatMap((c) => [c.query, c.response]),
  ...malformed.map((c) => c.bytes),
];

function int(random: Random, n: number): number {
  return randomIndex(random, n);
}

/** One mutation of `input` (never longer than 65,535 + 64 bytes). */
export function mutate(input: Uint8Array, random: Random, other: Uint8Array): Uint8Array {
  const out = input.slice();
  const at = () => int(random, Math.max(1, out.length));
  switch (int(random, 9)) {
    case 0: {
      if (out.length > 0) {
        const i = at();
        out[i] = out[i]! ^ (1 << int(random, 8));
      }
      return out;
    }
    case 1: {
      for (let i = int(random, 4) + 1; i > 0 && out.length > 0; i--) out[at()] = int(random, 256);
      return out;
    }
    case 2: {
      const i = at();
      const extra = Uint8Array.from({ length: int(random, 16) + 1 }, () => int(random, 256));
      return concat(out.subarray(0, i), extra, out.subarray(i));
    }
    case 3: {
      const i = at();
      return concat(
        out.subarray(0, i),
        out.subarray(Math.min(out.length, i + int(random, 16) + 1)),
      );
    }
    case 4:
      return out.subarray(0, int(random, out.length + 1));
    case 5:
      return concat(out.subarray(0, at()), other.subarray(int(random, Math.max(1, other.length))));
    case 6: {
      // A section count (QD/AN/NS/AR) set large or to zero.
      if (out.length >= 12) {
        const field = 4 + 2 * int(random, 4);
        const value = [0, 1, 0xff, 0xffff][int(random, 4)]!;
        out[field] = value >> 8;
        out[field + 1] = value & 0xff;
      }
      return out;
    }
    case 7: {
      // A compression pointer to anywhere, including itself and forwards.
      if (out.length >= 2) {
        const i = at();
        const target = int(random, out.length + 8);
        out[i] = 0xc0 | ((target >> 8) & 0x3f);
        if (i + 1 < out.length) out[i + 1] = target & 0xff;
      }
      return out;
    }
    default: {
      // A record's RDLENGTH-like 16-bit field somewhere past the header.
      if (out.length >= 14) {
        const i = 12 + int(random, out.length - 13);
        out[i] = int(random, 256);
        out[i + 1] = 0xff;
      }
      return out;
    }
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export interface FuzzFinding {
  kind: "crash" | "hang";
  hex: string;
  error: string;
}

export interface FuzzResult {
  inputs: number;
  findings: FuzzFinding[];
  slowestMs: number;
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** `inputs` mutated inputs (1–4 stacked mutations each) from a seeded generator. */
export function fuzzWire(options: {
  inputs: number;
  seed: number;
  hangMs?: number;
  now?: () => number;
  onProgress?: (done: number) => void;
}): FuzzResult {
  const random = createSeededRandom(options.seed);
  const now = options.now ?? (() => performance.now());
  const hangMs = options.hangMs ?? 100;
  const findings: FuzzFinding[] = [];
  let slowestMs = 0;
  for (let i = 0; i < options.inputs; i++) {
    let input = SEEDS[int(random, SEEDS.length)]!;
    for (let m = int(random, 4) + 1; m > 0; m--) {
      input = mutate(input, random, SEEDS[int(random, SEEDS.length)]!);
    }
    const started = now();
    const crash = crashOf(input);
    const ms = now() - started;
    slowestMs = Math.max(slowestMs, ms);
    if (crash !== undefined)
      findings.push({ kind: "crash", hex: hex(input), error: String(crash) });
    else if (ms > hangMs)
      findings.push({ kind: "hang", hex: hex(input), error: `${ms.toFixed(0)} ms` });
    if (options.onProgress && i % 100_000 === 99_999) options.onProgress(i + 1);
  }
  return { inputs: options.inputs, findings, slowestMs };
}
