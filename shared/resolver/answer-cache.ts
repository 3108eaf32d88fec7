// The answer cache both runtimes keep in memory: an LRU bounded by entries
// and bytes, keyed by everything in a query that changes its answer (cacheKey).
// Positive answers live for their smallest TTL, negative ones for the SOA
// minimum (RFC 2308, minTtl does both) capped by negative_ttl, SERVFAIL for
// servfail_ttl; everything clamped to [min_ttl, max_ttl]. Served copies
// carry the asker's ID and question bytes, with TTLs counted down. With
// serve_stale, expired entries are kept a day longer for RFC 8767.

import type { CacheConfig } from "../config/schema.ts";
import { copyBytes } from "../dns/bytes.ts";
import {
  ageTtls,
  minTtl,
  Rcode,
  readEdns,
  readHeader,
  readQuestion,
  readRcode,
  sameQuestion,
  walkRecords,
  withId,
} from "../dns/wire.ts";

/** RFC 8767 §4: the TTL on a stale answer. */
export const STALE_TTL_SECONDS = 30;
const STALE_WINDOW_MS = 86_400_000;

export interface CacheStats {
  hits: number;
  misses: number;
  stale: number;
  evictions: number;
  entries: number;
  bytes: number;
}

/** The calls take `key`, the query's cacheKey: a query without one never reaches the cache. */
export interface AnswerCache {
  /** A fresh cached answer for `query`, adapted to it; undefined on a miss. */
  get(key: string, query: Uint8Array): Uint8Array | undefined;
  /** An expired answer within the stale window (serve_stale only), TTLs set to 30 s. */
  getStale(key: string, query: Uint8Array): Uint8Array | undefined;
  /**
   * Stores `answer` to `query` when it is cacheable. Returns how long it is
   * kept (ms), or undefined when it was not stored.
   */
  put(key: string, query: Uint8Array, answer: Uint8Array): number | undefined;
  stats(): CacheStats;
}

interface Entry {
  answer: Uint8Array;
  storedAt: number;
  expiresAt: number;
  staleUntil: number;
}

const OPCODE_QUERY = 0;
const ECS_OPTION = 8;

/**
 * The cache key of a query that may be answered from the cache or share an
 * in-flight resolution; undefined when it may not: anything but a standard
 * QUERY with one question (NOTIFY, UPDATE, a response), an EDNS version other
 * than 0 (the upstream owes it BADVERS), or a message that cannot be read.
 * The key holds every part of a query that changes its answer: the
 * lower-cased name, type and class; the RD, AD and CD bits; whether the query
 * has an OPT record (RFC 6891 §6.1.1: an answer has one only if its query
 * did) and its DO bit; and the client subnet option, if any (RFC 7871), so
 * one subnet's answer is never served to another. A served copy then differs
 * from its query's own answer only in ID, question case and TTLs.
 */
export function cacheKey(query: Uint8Array): string | undefined {
  try {
    const header = readHeader(query);
    if (header.qr || header.opcode !== OPCODE_QUERY || header.qdcount !== 1) return undefined;
    const q = readQuestion(query);
    const edns = readEdns(query);
    const flags = `${header.rd ? 1 : 0}${header.ad ? 1 : 0}${header.cd ? 1 : 0}`;
    if (!edns) return `${q.name}|${q.type}|${q.class}|${flags}`;
    if (edns.version !== 0) return undefined;
    const ecs = edns.options.find((o) => o.code === ECS_OPTION);
    const subnet = ecs ? `|${hex(ecs.data)}` : "";
    return `${q.name}|${q.type}|${q.class}|${flags}|e${edns.dnssecOk ? 1 : 0}${subnet}`;
  } catch {
    return undefined;
  }
}

const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/**
 * `answer` as an answer to `query`: the query's ID, and its question bytes
 * (a client checking 0x20 case gets its own case back).
 */
export function adaptAnswer(answer: Uint8Array, query: Uint8Array): Uint8Array {
  const out = withId(answer, (query[0]! << 8) | query[1]!);
  const end = questionNameEnd(query);
  if (end !== undefined && end === questionNameEnd(out) && end <= out.length) {
    out.set(query.subarray(12, end), 12);
  }
  return out;
}

/** Where the first question's (uncompressed) name ends, or undefined. */
function questionNameEnd(msg: Uint8Array): number | undefined {
  let pos = 12;
  for (let hops = 0; hops < 128; hops++) {
    const len = msg[pos];
    if (len === undefined || len > 63) return undefined;
    pos += len + 1;
    if (len === 0) return pos;
  }
  return undefined;
}

/** Lowers every TTL but OPT's to at most `max` seconds, in place; returns `msg`. */
function capTtls(msg: Uint8Array, max: number): Uint8Array {
  const view = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  walkRecords(msg, (rr) => {
    if (rr.type !== 41 && rr.ttl > max) view.setUint32(rr.ttlOffset, max);
  });
  return msg;
}

/** How long `answer` may be cached, in ms; undefined = not cacheable. */
export function lifetimeMs(
  config: CacheConfig,
  query: Uint8Array,
  answer: Uint8Array,
): number | undefined {
  let header: ReturnType<typeof readHeader>;
  let rcode: number;
  try {
    header = readHeader(answer);
    rcode = readRcode(answer);
    if (!header.qr || header.tc || !sameQuestion(query, answer)) return undefined;
  } catch {
    return undefined;
  }
  if (rcode === Rcode.SERVFAIL) return config.servfail_ttl > 0 ? config.servfail_ttl : undefined;
  if (rcode !== Rcode.NOERROR && rcode !== Rcode.NXDOMAIN) return undefined;
  let ttlS: number | undefined;
  try {
    ttlS = minTtl(answer);
  } catch {
    return undefined;
  }
  if (ttlS === undefined) return undefined;
  const negative = rcode === Rcode.NXDOMAIN || header.ancount === 0;
  let ms = ttlS * 1000;
  if (negative) ms = Math.min(ms, config.negative_ttl);
  ms = Math.min(config.max_ttl, Math.max(config.min_ttl, ms));
  return ms > 0 ? ms : undefined;
}

/** A stored answer as served at `now` to `query`: TTLs counted down and capped at what is left. */
export function servedCopy(
  entry: { answer: Uint8Array; storedAt: number; expiresAt: number },
  now: number,
  query: Uint8Array,
): Uint8Array {
  const remainingS = Math.ceil((entry.expiresAt - now) / 1000);
  // ageTtls' copy is ours to cap in place.
  const aged = ageTtls(entry.answer, Math.floor((now - entry.storedAt) / 1000));
  return adaptAnswer(capTtls(aged, remainingS), query);
}

export function createAnswerCache(config: CacheConfig, now: () => number): AnswerCache {
  const entries = new Map<string, Entry>();
  const stats = { hits: 0, misses: 0, stale: 0, evictions: 0, bytes: 0 };
  const maxBytes = config.max_bytes ?? Number.POSITIVE_INFINITY;

  function drop(key: string, entry: Entry) {
    entries.delete(key);
    stats.bytes -= entry.answer.length;
  }

  function evict() {
    while (entries.size > config.size || stats.bytes > maxBytes) {
      const oldest = entries.entries().next().value;
      if (!oldest) return;
      drop(oldest[0], oldest[1]);
      stats.evictions++;
    }
  }

  return {
    get(key, query) {
      if (config.size === 0) return undefined;
      const entry = entries.get(key);
      const t = now();
      if (!entry || t >= entry.expiresAt) {
        if (entry && t >= entry.staleUntil) drop(key, entry);
        stats.misses++;
        return undefined;
      }
      entries.delete(key);
      entries.set(key, entry);
      stats.hits++;
      return servedCopy(entry, t, query);
    },
    getStale(key, query) {
      if (config.size === 0 || !config.serve_stale) return undefined;
      const entry = entries.get(key);
      if (!entry || now() >= entry.staleUntil) return undefined;
      stats.stale++;
      return adaptAnswer(capTtls(copyBytes(entry.answer), STALE_TTL_SECONDS), query);
    },
    put(key, query, answer) {
      if (config.size === 0) return undefined;
      const ms = lifetimeMs(config, query, answer);
      if (ms === undefined || answer.length > maxBytes) return undefined;
      const old = entries.get(key);
      if (old) drop(key, old);
      const t = now();
      const expiresAt = t + ms;
      entries.set(key, {
        // The cache's own copy, never a view of the caller's bytes.
        answer: copyBytes(answer),
        storedAt: t,
        expiresAt,
        staleUntil: config.serve_stale ? expiresAt + STALE_WINDOW_MS : expiresAt,
      });
      stats.bytes += answer.length;
      evict();
      return ms;
    },
    stats: () => ({ ...stats, entries: entries.size }),
  };
}
