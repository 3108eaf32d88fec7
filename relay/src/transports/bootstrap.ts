// Resolves upstream host names through the configured plain-DNS bootstrap
// servers instead of the system resolver (which may itself point at this
// relay). Addresses are cached for their TTL and re-resolved on the first
// connect after it; a failed re-resolution keeps the last address (a stale
// address beats no upstream) and tries again a few seconds later. The
// result is a `lookup` function for net/tls/http2/dgram connects.
// Optional EDNS Client Subnet (RFC 7871) goes on these lookups only.

import type { LookupAddress, LookupOptions } from "node:dns";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { type Cidr, parseIp } from "../../../shared/config/ip.ts";
import type { HostPort } from "../../../shared/config/upstream-url.ts";
import { decodeMessage } from "../../../shared/dns/codec.ts";
import { buildQuery } from "../../../shared/dns/query.ts";
import { EDNS_UDP_SIZE, Rcode, readRcode } from "../../../shared/dns/wire.ts";
import type { Upstream } from "../../../shared/engine/upstream.ts";
import { DohEdgeError } from "../../../shared/errors.ts";
import { createUdpUpstream } from "./udp.ts";

export type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

export type LookupFunction = (
  hostname: string,
  options: LookupOptions | number,
  callback: LookupCallback,
) => void;

export interface BootstrapOptions {
  servers: readonly HostPort[];
  ecs?: "auto" | Cidr;
  /** Per server and lookup, ms (default 2000). */
  timeoutMs?: number;
  /** Retry delay after a failed re-resolution, ms (default 5000). */
  retryMs?: number;
  now?: () => number;
}

export interface Bootstrap {
  lookup: LookupFunction;
  /** The addresses of `host` (family 4 first), resolving when not cached or expired. */
  resolve(host: string): Promise<LookupAddress[]>;
  /** Lookups sent to the bootstrap servers so far. */
  readonly queries: number;
  close(): Promise<void>;
}

interface Entry {
  addresses: LookupAddress[];
  expiresAt: number;
  refreshing?: Promise<LookupAddress[]>;
}

export class BootstrapError extends DohEdgeError {
  override readonly name = "BootstrapError";
  readonly code = "bootstrap_failed";
}

const MIN_TTL_MS = 1000;
const MAX_TTL_MS = 86_400_000;

export function createBootstrap(options: BootstrapOptions): Bootstrap {
  const now = options.now ?? Date.now;
  const timeoutMs = options.timeoutMs ?? 2000;
  const retryMs = options.retryMs ?? 5000;
  const servers: Upstream[] = options.servers.map((s, i) =>
    createUdpUpstream({
      name: `bootstrap-${i + 1}`,
      host: s.host,
      port: s.port,
      connectTimeoutMs: timeoutMs,
    }),
  );
  const ecs = options.ecs === "auto" ? localSubnet() : options.ecs;
  const cache = new Map<string, Entry>();
  let queries = 0;

  async function refresh(host: string): Promise<LookupAddress[]> {
    const ask = (qtype: 1 | 28) =>
      askServers(servers, host, qtype, { ecs, timeoutMs, counted: () => queries++ });
    const [v4, v6] = await Promise.allSettled([ask(1), ask(28)]);
    const addresses: LookupAddress[] = [];
    let ttl = MAX_TTL_MS / 1000;
    if (v4.status === "fulfilled") {
      addresses.push(...v4.value.addresses.map((address) => ({ address, family: 4 })));
      if (v4.value.addresses.length > 0) ttl = Math.min(ttl, v4.value.ttl);
    }
    if (v6.status === "fulfilled") {
      addresses.push(...v6.value.addresses.map((address) => ({ address, family: 6 })));
      if (v6.value.addresses.length > 0) ttl = Math.min(ttl, v6.value.ttl);
    }
    if (addresses.length === 0) {
      const failed = [v4, v6].find((r) => r.status === "rejected");
      if (failed) throw failed.reason;
      throw new BootstrapError(`${host}: no A or AAAA records`);
    }
    const ttlMs = Math.min(MAX_TTL_MS, Math.max(MIN_TTL_MS, ttl * 1000));
    cache.set(host, { addresses, expiresAt: now() + ttlMs });
    return addresses;
  }

  function resolve(host: string): Promise<LookupAddress[]> {
    const entry = cache.get(host);
    if (entry && now() < entry.expiresAt) return Promise.resolve(entry.addresses);
    if (entry?.refreshing) return entry.refreshing;
    const pending = refresh(host).catch((error) => {
      if (!entry) throw error;
      // Keep serving the last addresses; try again after retryMs.
      entry.expiresAt = now() + retryMs;
      return entry.addresses;
    });
    if (entry) {
      entry.refreshing = pending;
      void pending.finally(() => {
        entry.refreshing = undefined;
      });
    }
    return pending;
  }

  const lookup = lookupVia(resolve);

  return {
    lookup,
    resolve,
    get queries() {
      return queries;
    },
    async close() {
      await Promise.all(servers.map((s) => s.close()));
    },
  };
}

/** Asks each bootstrap server in turn for `host`'s A or AAAA records, until one answers. */
async function askServers(
  servers: readonly Upstream[],
  host: string,
  qtype: 1 | 28,
  options: { ecs: Cidr | undefined; timeoutMs: number; counted(): void },
): Promise<{ addresses: string[]; ttl: number }> {
  let query: Uint8Array = buildQuery(host, qtype, { ednsUdpSize: EDNS_UDP_SIZE });
  if (options.ecs) query = withClientSubnet(query, options.ecs);
  let lastError: unknown;
  for (const server of servers) {
    options.counted();
    try {
      const answer = await server.query(query, AbortSignal.timeout(options.timeoutMs));
      const rcode = readRcode(answer);
      if (rcode !== Rcode.NOERROR && rcode !== Rcode.NXDOMAIN) {
        lastError = new BootstrapError(`${host}: ${server.name} answered rcode ${rcode}`);
        continue;
      }
      const records = decodeMessage(answer).answers ?? [];
      const wanted = qtype === 1 ? "A" : "AAAA";
      const found = records.filter((r) => r.type === wanted);
      const ttl = Math.min(...records.map((r) => r.ttl ?? 0), MAX_TTL_MS / 1000);
      return { addresses: found.map((r) => String(r.data)), ttl };
    } catch (error) {
      lastError = error;
    }
  }
  throw new BootstrapError(`${host}: no bootstrap server answered`, { cause: lastError });
}

/** A node:net/dgram lookup function answering from `resolve`. */
function lookupVia(resolve: (host: string) => Promise<LookupAddress[]>): LookupFunction {
  return (hostname, lookupOptions, callback) => {
    const opts = typeof lookupOptions === "number" ? { family: lookupOptions } : lookupOptions;
    // An address needs no lookup; dgram also asks for its bind address (0.0.0.0) here.
    const literal = isIP(hostname);
    if (literal !== 0) {
      const address = { address: hostname, family: literal };
      process.nextTick(() =>
        opts.all ? callback(null, [address]) : callback(null, hostname, literal),
      );
      return;
    }
    resolve(hostname).then(
      (all) => {
        const family = opts.family === "IPv4" ? 4 : opts.family === "IPv6" ? 6 : opts.family;
        const usable = family === 4 || family === 6 ? all.filter((a) => a.family === family) : all;
        if (usable.length === 0) {
          const error: NodeJS.ErrnoException = new BootstrapError(
            `${hostname}: no address of family ${family}`,
          );
          error.code = "ENOTFOUND";
          callback(error, []);
        } else if (opts.all) callback(null, usable);
        else callback(null, usable[0]!.address, usable[0]!.family);
      },
      (error: NodeJS.ErrnoException) => {
        error.code ??= "ENOTFOUND";
        callback(error, []);
      },
    );
  };
}

/** Appends an EDNS Client Subnet option to a query whose last record is its OPT. */
export function withClientSubnet(query: Uint8Array, subnet: Cidr): Uint8Array {
  const addressBytes = subnet.bytes.subarray(0, Math.ceil(subnet.prefix / 8));
  const option = new Uint8Array(4 + 4 + addressBytes.length);
  const view = new DataView(option.buffer);
  view.setUint16(0, 8); // OPTION-CODE: edns-client-subnet
  view.setUint16(2, 4 + addressBytes.length);
  view.setUint16(4, subnet.family === 4 ? 1 : 2);
  option[6] = subnet.prefix;
  option[7] = 0; // SCOPE PREFIX-LENGTH: 0 in queries
  option.set(addressBytes, 8);
  const out = new Uint8Array(query.length + option.length);
  out.set(query);
  out.set(option, query.length);
  // The OPT record's RDLENGTH is the query's last two bytes (buildQuery writes it last).
  new DataView(out.buffer).setUint16(query.length - 2, option.length);
  return out;
}

/** "auto": the first non-internal interface address as a /24 (IPv4) or /48 (IPv6). */
function localSubnet(): Cidr | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const info of list ?? []) {
      if (info.internal) continue;
      const ip = parseIp(info.address.replace(/%.*$/, ""));
      const prefix = ip.family === 4 ? 24 : 48;
      return { family: ip.family, prefix, bytes: ip.bytes.map((b, i) => (i < prefix / 8 ? b : 0)) };
    }
  }
  return undefined;
}
