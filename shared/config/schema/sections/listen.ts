// The relay's `listen`: which listeners exist and their tuning. Only the
// listeners written exist; with no `listen` at all, udp and tcp on
// 127.0.0.1:5053.

import * as z from "zod";
import { DOH_PATH } from "../../../doh/doh-request.ts";
import { cidrContains, parseCidr, parseIp } from "../../ip.ts";
import { type HostPort, parseHostPort } from "../../upstream-url.ts";
import {
  absoluteUrlPath,
  envName,
  intFrom,
  intIn,
  nonEmpty,
  parsedString,
  positiveDuration,
} from "../fields.ts";
import type { Checker } from "../parse.ts";

export interface UdpListenerConfig {
  addr: HostPort;
  reuse_port: boolean;
  /** SO_RCVBUF/SO_SNDBUF bytes; undefined = the OS default. */
  udp_buffer_size?: number;
}

/** TCP-like listeners. Durations in ms. */
export interface StreamListenerConfig {
  addr: HostPort;
  reuse_port: boolean;
  /** A started query must arrive within this (default 5000). */
  read_timeout: number;
  /** An answer must be written within this (default 5000). */
  write_timeout: number;
  /** A connection with nothing in flight closes after this (default 10000). */
  idle_timeout: number;
  /** Open connections at once (default 1000). */
  max_connections: number;
  /** Then the connection closes; 0 = unlimited (default 0). */
  max_queries_per_connection: number;
}

export interface DotListenerConfig extends StreamListenerConfig {
  cert: string;
  key: string;
}

export interface DohListenerConfig extends StreamListenerConfig {
  /** Without cert/key the listener speaks plain HTTP (for a TLS-terminating proxy). */
  cert?: string;
  key?: string;
  /** Where DoH is served; DOH_PATH ("/dns-query") by default. */
  path: string;
}

export interface OriginListenerConfig extends StreamListenerConfig {
  /** Environment variable holding the bearer token (default "RELAY_TOKEN"). */
  token_env: string;
  cert?: string;
  key?: string;
}

/** Only the listeners written exist; with no `listen` at all: udp and tcp on 127.0.0.1:5053. */
export interface ListenConfig {
  udp?: UdpListenerConfig;
  tcp?: StreamListenerConfig;
  dot?: DotListenerConfig;
  doh?: DohListenerConfig;
  origin?: OriginListenerConfig;
  /** /metrics /healthz /readyz /statusz */
  metrics?: { addr: HostPort };
}

const listenAddr = parsedString(
  (text) => parseHostPort(text, { emptyHost: "0.0.0.0" }),
  'an address such as "127.0.0.1:5053"',
);

/** Written as a plain address string or as a mapping with `addr`. */
const listener = <S extends z.core.$ZodLooseShape>(shape: S) =>
  z.preprocess(
    (value) => (typeof value === "string" ? { addr: value } : value),
    z.strictObject({ addr: listenAddr, ...shape }),
  );

const streamTuning = {
  reuse_port: z.boolean().default(false),
  read_timeout: positiveDuration.prefault("5s"),
  write_timeout: positiveDuration.prefault("5s"),
  idle_timeout: positiveDuration.prefault("10s"),
  max_connections: intFrom(1).default(1000),
  max_queries_per_connection: intFrom(0).default(0),
};
const STREAM_KEYS = new Set(Object.keys(streamTuning));

export const listenSchema = z.strictObject({
  udp: listener({
    reuse_port: z.boolean().default(false),
    udp_buffer_size: intIn(512, 67_108_864).optional(),
  }).optional(),
  tcp: listener(streamTuning).optional(),
  dot: listener({ ...streamTuning, cert: nonEmpty, key: nonEmpty }).optional(),
  doh: listener({
    ...streamTuning,
    cert: nonEmpty.optional(),
    key: nonEmpty.optional(),
    path: absoluteUrlPath.default(DOH_PATH),
  }).optional(),
  origin: listener({
    ...streamTuning,
    token_env: envName.default("RELAY_TOKEN"),
    cert: nonEmpty.optional(),
    key: nonEmpty.optional(),
  }).optional(),
  metrics: listener({}).optional(),
});

/** The message for a key written on a listener that does not take it. */
export function listenerKeyHint(listenerName: string, key: string): string | undefined {
  if (key === "udp_buffer_size") return "applies only to the udp listener";
  if (STREAM_KEYS.has(key))
    return `applies to tcp, dot, doh and origin listeners, not ${listenerName}`;
  return undefined;
}

function isLoopbackHost(address: HostPort): boolean {
  if (address.hostKind === "name") return address.host === "localhost";
  const ip = parseIp(address.host);
  return cidrContains(parseCidr("127.0.0.0/8"), ip) || cidrContains(parseCidr("::1/128"), ip);
}

/** cert and key go together; without them a listener off loopback gets `plainWarning`. */
function withOptionalTls<L extends { addr: HostPort; cert?: string; key?: string }>(
  name: "doh" | "origin",
  raw: L,
  plainWarning: string,
  check: Checker,
): L {
  const { cert, key, ...rest } = raw;
  if ((cert === undefined) !== (key === undefined)) {
    check.error(
      ["listen", name, cert === undefined ? "key" : "cert"],
      "needs both cert and key, or neither",
    );
  }
  if (cert === undefined && !isLoopbackHost(raw.addr)) check.warn(["listen", name], plainWarning);
  return {
    ...rest,
    ...(cert !== undefined ? { cert } : {}),
    ...(key !== undefined ? { key } : {}),
  } as L;
}

export function finalizeListen(
  raw: z.output<typeof listenSchema> | undefined,
  check: Checker,
): ListenConfig {
  if (raw === undefined) {
    const addr: HostPort = { host: "127.0.0.1", hostKind: "ipv4", port: 5053 };
    return {
      udp: { addr, reuse_port: false },
      tcp: { addr, ...z.strictObject(streamTuning).parse({}) },
    };
  }
  const listen: ListenConfig = {};
  if (raw.udp) {
    const { addr, reuse_port, udp_buffer_size } = raw.udp;
    listen.udp = {
      addr,
      reuse_port,
      ...(udp_buffer_size !== undefined ? { udp_buffer_size } : {}),
    };
  }
  if (raw.tcp) listen.tcp = raw.tcp;
  if (raw.dot) listen.dot = raw.dot;
  if (raw.doh) {
    listen.doh = withOptionalTls(
      "doh",
      raw.doh,
      "without cert and key this DoH listener speaks plain HTTP; keep it behind a TLS-terminating proxy",
      check,
    );
  }
  if (raw.origin) {
    listen.origin = withOptionalTls(
      "origin",
      raw.origin,
      "without cert and key the bearer token crosses the network in clear; add cert and key or use a TLS tunnel",
      check,
    );
  }
  if (raw.metrics) listen.metrics = { addr: raw.metrics.addr };
  if (!raw.udp && !raw.tcp && !raw.dot && !raw.doh && !raw.origin) {
    check.error(["listen"], "needs at least one of udp, tcp, dot, doh or origin");
  }
  return listen;
}
