// Plain DNS over UDP through a small set of connected sockets per upstream,
// queries multiplexed by a random message ID (restored to the caller's on
// the way back). Opening, binding and closing a socket per query cost more
// than the rest of the relay's per-query work; sockets are still replaced
// after a number of queries so source ports keep changing (RFC 5452). An
// answer with TC=1 is retried over TCP (RFC 7766 §5).

import { randomInt } from "node:crypto";
import { createSocket, type Socket, type SocketOptions } from "node:dgram";
import type { LookupFunction } from "node:net";
import { readHeader, readId, withId } from "../../../shared/dns/wire.ts";
import { UpstreamError } from "../../../shared/engine/errors.ts";
import type { Upstream } from "../../../shared/engine/upstream.ts";
import { type TcpUpstreamOptions, tcpExchange } from "./tcp.ts";

export interface UdpUpstreamOptions extends TcpUpstreamOptions {
  /** Sockets kept open per upstream (default 4). */
  sockets?: number;
  /** Queries a socket carries before a fresh one (a new source port) replaces it (default 2000). */
  queriesPerSocket?: number;
}

interface Waiter {
  resolve(answer: Uint8Array): void;
  reject(error: UpstreamError): void;
}

interface Slot {
  socket: Socket;
  ready: Promise<void>;
  pending: Map<number, Waiter>;
  uses: number;
  retired: boolean;
}

/**
 * A UDP socket connected to `host`:`port`; `ready` settles once it is. A host
 * name goes through `lookup` (the relay's bootstrap servers), as IPv4 unless
 * the host is an IPv6 literal. Used by the UDP and DoQ upstreams.
 */
export function connectUdpSocket(
  host: string,
  port: number,
  lookup?: LookupFunction,
): { socket: Socket; ready: Promise<void> } {
  const socket = createSocket({
    type: host.includes(":") ? "udp6" : "udp4",
    // dgram's type asks for the single-address form, which lookup gives without `all`.
    ...(lookup ? { lookup: lookup as SocketOptions["lookup"] } : {}),
  });
  const ready = new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.connect(port, host, () => {
      socket.off("error", reject);
      resolve();
    });
  });
  return { socket, ready };
}

export function createUdpUpstream(options: UdpUpstreamOptions): Upstream {
  const { name, host, port } = options;
  const size = options.sockets ?? 4;
  const queriesPerSocket = options.queriesPerSocket ?? 2000;
  const slots: (Slot | undefined)[] = new Array(size).fill(undefined);
  /** Every open socket, retired ones still awaiting answers included. */
  const live = new Set<Slot>();
  let turn = 0;
  let closed = false;

  function closeIfDone(slot: Slot) {
    if (slot.retired && slot.pending.size === 0 && live.delete(slot)) slot.socket.close();
  }

  function retire(slot: Slot) {
    slot.retired = true;
    closeIfDone(slot);
  }

  function fail(slot: Slot, error: UpstreamError) {
    const index = slots.indexOf(slot);
    if (index >= 0) slots[index] = undefined;
    for (const waiter of slot.pending.values()) waiter.reject(error);
    slot.pending.clear();
    retire(slot);
  }

  function open(): Slot {
    const { socket, ready } = connectUdpSocket(host, port, options.lookup);
    const slot: Slot = { socket, ready, pending: new Map(), uses: 0, retired: false };
    slot.ready.catch(() => {});
    socket.on("error", (error) =>
      fail(slot, new UpstreamError("send", name, undefined, { cause: error })),
    );
    // A connected socket only receives from the server; the ID picks the query.
    socket.on("message", (msg) => {
      if (msg.length < 12) return;
      const answer = new Uint8Array(msg.buffer, msg.byteOffset, msg.length);
      const waiter = slot.pending.get(readId(answer));
      if (!waiter) return;
      slot.pending.delete(readId(answer));
      waiter.resolve(answer);
      closeIfDone(slot);
    });
    live.add(slot);
    return slot;
  }

  function pick(): Slot {
    const index = turn++ % size;
    let slot = slots[index];
    if (slot && slot.uses >= queriesPerSocket) {
      retire(slot);
      slot = undefined;
    }
    if (!slot) {
      slot = open();
      slots[index] = slot;
    }
    slot.uses++;
    return slot;
  }

  async function exchange(message: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    signal.throwIfAborted();
    const slot = pick();
    let id = randomInt(0x10000);
    while (slot.pending.has(id)) id = (id + 1) & 0xffff;
    const answer = new Promise<Uint8Array>((resolve, reject) => {
      const onAbort = () => {
        slot.pending.delete(id);
        closeIfDone(slot);
        reject(new UpstreamError("aborted", name, undefined, { cause: signal.reason }));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      slot.pending.set(id, {
        resolve(bytes) {
          signal.removeEventListener("abort", onAbort);
          resolve(bytes);
        },
        reject(error) {
          signal.removeEventListener("abort", onAbort);
          reject(error);
        },
      });
    });
    try {
      await slot.ready;
    } catch (error) {
      fail(slot, new UpstreamError("send", name, undefined, { cause: error }));
    }
    if (slot.pending.has(id)) {
      slot.socket.send(withId(message, id), (error) => {
        if (error) fail(slot, new UpstreamError("send", name, undefined, { cause: error }));
      });
    }
    return answer;
  }

  return {
    name,
    async query(message, signal) {
      if (closed) throw new UpstreamError("closed", name);
      const answer = await exchange(message, signal);
      if (readHeader(answer).tc) return tcpExchange(options, message, signal);
      return withId(answer, readId(message));
    },
    async close() {
      closed = true;
      for (const slot of [...live]) fail(slot, new UpstreamError("closed", name));
    },
  };
}
