// The UDP side of statsd: one connected datagram socket to the collector.
// Connected, so the kernel reports ICMP port-unreachable (a collector that
// is down) as ECONNREFUSED on a later send or read; those errors are counted
// and swallowed here. Nothing on the query path waits for this: send()
// returns at once. Packets handed over while the socket connects wait for
// it; with no socket and no attempt under way (the host did not resolve)
// they are dropped and counted, and the next send tries again.

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
  let pending = 0;
  let idle: (() => void) | undefined;
  /**
   * One report per run of failures. A send to a closed port succeeds and the
   * ICMP error comes back as a read error after it, so "working again" is a
   * whole interval (send to send) without an error.
   */
  let sendFailing = false;
  let errorsAtLastSend = 0;
  let resolveFailing = false;

  const sendFailed = (error: Error) => {
    stats.sendErrors++;
    if (!sendFailing) options.onProblem?.("send", error);
    sendFailing = true;
  };

  async function open(): Promise<void> {
    const { host, port } = options.addr;
    let address = host;
    let family = isIP(host);
    if (family === 0) {
      try {
        ({ address, family } = await lookup(host));
      } catch (error) {
        stats.resolveErrors++;
        if (!resolveFailing) options.onProblem?.("resolve", error as Error);
        resolveFailing = true;
        return;
      }
    }
    resolveFailing = false;
    if (closed) return;
    const s = createSocket(family === 6 ? "udp6" : "udp4");
    // ICMP errors surface as read errors on a connected socket.
    s.on("error", sendFailed);
    s.unref();
    await new Promise<void>((resolve) => {
      // Node passes a connect failure to the callback (@types/node omits it).
      const connected = (error?: Error) => {
        if (error) {
          sendFailed(error);
          s.close();
        } else if (closed) s.close();
        else socket = s;
        resolve();
      };
      s.connect(port, address, connected as () => void);
    });
  }

  /** Starts connecting if not connected; a failed attempt is retried at the next send. */
  function ensureOpen(): void {
    if (socket || connecting || closed) return;
    connecting = open().finally(() => {
      connecting = undefined;
      const held = waiting;
      waiting = [];
      if (socket) write(socket, held);
      else stats.packetsDropped += held.length;
    });
  }

  function write(to: Socket, packets: readonly string[]): void {
    for (const packet of packets) {
      if (pending >= MAX_PENDING_SENDS) {
        stats.packetsDropped++;
        continue;
      }
      pending++;
      to.send(packet, afterSend);
    }
  }

  const afterSend = (error: Error | null) => {
    pending--;
    if (error) sendFailed(error);
    else stats.packetsSent++;
    if (pending === 0) idle?.();
  };

  ensureOpen();
  return {
    send(packets) {
      if (stats.sendErrors === errorsAtLastSend) sendFailing = false;
      errorsAtLastSend = stats.sendErrors;
      if (socket) write(socket, packets);
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
      if (pending > 0) await new Promise<void>((resolve) => (idle = resolve));
      const s = socket;
      socket = undefined;
      if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    },
  };
}
