// The UDP side of statsd: one connected datagram socket to the collector.
// Connected, so the kernel reports ICMP port-unreachable (a collector that
// is down) as ECONNREFUSED on a later send or read; those errors are counted
// and swallowed here. A send to a closed port itself succeeds and its error
// arrives after it, so the collector counts as back only when a whole
// interval (send to send) passes without one. Nothing on the query path
// waits for this: send() returns at once. Packets handed over while the
// socket connects wait for it; with no socket and no attempt under way (the
// host did not resolve) they are dropped and counted, and the next send
// tries again.

import { createSocket, type Socket } from "node:dgram";
import { lookup as dnsLookup } from "node:dns/promises";
import { isIP } from "node:net";
import type { HostPort } from "../../../shared/config/upstream-url.ts";

export type Lookup = (host: string) => Promise<{ address: string; family: number }>;

export interface StatsdSinkOptions {
  addr: HostPort;
  /** Host name resolution (default: the system resolver, first address). */
  lookup?: Lookup;
  /** The first failure of each kind in a row (resolve, send), for one log line. */
  onProblem?: (what: "resolve" | "send", error: Error) => void;
}

export interface StatsdSinkStats {
  packetsSent: number;
  /** Sends (or socket reads) that failed: the collector is down or unreachable. */
  sendErrors: number;
  /** Packets dropped because the socket was not connected (yet). */
  packetsDropped: number;
  resolveErrors: number;
}

export interface StatsdSink {
  send(packets: readonly string[]): void;
  stats(): StatsdSinkStats;
  /** Waits for sends in flight, then closes the socket. */
  close(): Promise<void>;
}

/** Sends queued in the socket beyond this are dropped rather than buffered. */
const MAX_PENDING_SENDS = 256;

const systemLookup: Lookup = (host) => dnsLookup(host);

/** The host as an address: an IP as is, a name through `lookup`. */
async function resolve(host: string, lookup: Lookup): Promise<{ address: string; family: number }> {
  const family = isIP(host);
  if (family !== 0) return { address: host, family };
  // RFC 6761 §6.4: a name under .invalid never resolves; asking DNS only leaks it.
  if (/(^|\.)invalid\.?$/i.test(host)) throw new Error(`${host}: a .invalid name never resolves`);
  return lookup(host);
}

/**
 * A UDP socket connected to `address`, not holding the process open, whose
 * errors (ICMP ones surface as read errors) go to `onError`; undefined when
 * connect fails (reported to `onError` too).
 */
function connectUdp(
  target: { address: string; family: number },
  port: number,
  onError: (error: Error) => void,
): Promise<Socket | undefined> {
  const s = createSocket(target.family === 6 ? "udp6" : "udp4");
  s.on("error", onError);
  s.unref();
  return new Promise((done) => {
    // Node passes a connect failure to the callback (@types/node omits it).
    const connected = (error?: Error) => {
      if (!error) return done(s);
      onError(error);
      s.close();
      done(undefined);
    };
    s.connect(port, target.address, connected as () => void);
  });
}

/** Sends on a socket with a bound on sends queued; counts sent, failed and dropped. */
function createWriter(stats: StatsdSinkStats, failed: (error: Error) => void) {
  let pending = 0;
  let idle: (() => void) | undefined;
  const afterSend = (error: Error | null) => {
    pending--;
    if (error) failed(error);
    else stats.packetsSent++;
    if (pending === 0) idle?.();
  };
  return {
    write(to: Socket, packets: readonly string[]): void {
      for (const packet of packets) {
        if (pending >= MAX_PENDING_SENDS) {
          stats.packetsDropped++;
          continue;
        }
        pending++;
        to.send(packet, afterSend);
      }
    },
    /** Resolves when every send has called back. */
    drained: () =>
      pending === 0 ? Promise.resolve() : new Promise<void>((resolve) => (idle = resolve)),
  };
}

export function createStatsdSink(options: StatsdSinkOptions): StatsdSink {
  const lookup = options.lookup ?? systemLookup;
  const stats: StatsdSinkStats = {
    packetsSent: 0,
    sendErrors: 0,
    packetsDropped: 0,
    resolveErrors: 0,
  };
  let socket: Socket | undefined;
  let connecting: Promise<void> | undefined;
  /** Packets handed over while connecting. */
  let waiting: string[] = [];
  let closed = false;
  // One report per run of failures; "working again" is a send-to-send interval without an error.
  const failing = { send: false, resolve: false };
  let errorsAtLastSend = 0;
  const report = (what: "send" | "resolve", error: Error) => {
    if (!failing[what]) options.onProblem?.(what, error);
    failing[what] = true;
  };
  const sendFailed = (error: Error) => {
    stats.sendErrors++;
    report("send", error);
  };
  const writer = createWriter(stats, sendFailed);

  async function open(): Promise<void> {
    let target: { address: string; family: number };
    try {
      target = await resolve(options.addr.host, lookup);
    } catch (error) {
      stats.resolveErrors++;
      return report("resolve", error as Error);
    }
    failing.resolve = false;
    if (closed) return;
    const s = await connectUdp(target, options.addr.port, sendFailed);
    if (s && closed) s.close();
    else socket = s;
  }

  /** Starts connecting if not connected; a failed attempt is retried at the next send. */
  function ensureOpen(): void {
    if (socket || connecting || closed) return;
    connecting = open().finally(() => {
      connecting = undefined;
      const held = waiting;
      waiting = [];
      if (socket) writer.write(socket, held);
      else stats.packetsDropped += held.length;
    });
  }

  ensureOpen();
  return {
    send(packets) {
      if (stats.sendErrors === errorsAtLastSend) failing.send = false;
      errorsAtLastSend = stats.sendErrors;
      if (socket) writer.write(socket, packets);
      else if (connecting && !closed) {
        // Connecting now: these go out once it is (what does not fit is dropped).
        const room = MAX_PENDING_SENDS - waiting.length;
        waiting.push(...packets.slice(0, room));
        stats.packetsDropped += Math.max(0, packets.length - room);
      } else {
        stats.packetsDropped += packets.length;
        ensureOpen();
      }
    },
    stats: () => ({ ...stats }),
    async close() {
      closed = true;
      await connecting;
      await writer.drained();
      const s = socket;
      socket = undefined;
      if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    },
  };
}
