// Plain DNS over UDP through a small set of connected sockets per upstream,
// queries multiplexed by a random message ID (restored to the caller's on
// the way back). Opening, binding and closing a socket per query cost more
// than the rest of the relay's per-query work; sockets are still replaced
// after a number of queries so source ports keep changing (RFC 5452). An
// answer with TC=1 is retried over TCP (RFC 7766 §5).

import { randomFillSync } from "node:crypto";
import { createSocket, type Socket, type SocketOptions } from "node:dgram";
import type { LookupFunction } from "node:net";
import { plainBytes } from "../../../shared/dns/bytes.ts";
import { readId, setId, withId } from "../../../shared/dns/wire.ts";
import { abortedBy, UpstreamError } from "../../../shared/engine/errors.ts";
import { type Upstream, unsendable } from "../../../shared/engine/upstream.ts";
import { type TcpUpstreamOptions, tcpExchange } from "./tcp.ts";

export interface UdpUpstreamOptions extends TcpUpstreamOptions {
  /** Sockets kept open per upstream (default 4). */
  sockets?: number;
  /** Queries a socket carries before a fresh one (a new source port) replaces it (default 2000). */
  queriesPerSocket?: number;
}

interface Waiter {
  /** The caller's query: its ID goes back on the answer, and a TC=1 answer retries it over TCP. */
  readonly query: Uint8Array;
  readonly resolve: (answer: Uint8Array) => void;
  readonly reject: (error: UpstreamError) => void;
  readonly signal: AbortSignal;
  readonly onAbort: () => void;
}

interface Slot {
  socket: Socket;
  ready: Promise<void>;
  connected: boolean;
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

/**
 * Unpredictable 16-bit message IDs (RFC 5452), drawn from a batch of random
 * bytes refilled every 1,024 IDs: one call into the CSPRNG per batch
 * instead of crypto.randomInt's validation and call per query.
 */
function createIdSource(): () => number {
  const ids = new Uint16Array(1024);
  let next = ids.length;
  return () => {
    if (next === ids.length) {
      randomFillSync(ids);
      next = 0;
    }
    return ids[next++]!;
  };
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
  const randomId = createIdSource();

  function closeIfDone(slot: Slot) {
    if (slot.retired && slot.pending.size === 0 && live.delete(slot)) slot.socket.close();
  }

  function retire(slot: Slot) {
    slot.retired = true;
    closeIfDone(slot);
  }

  function settle(waiter: Waiter) {
    waiter.signal.removeEventListener("abort", waiter.onAbort);
  }

  function fail(slot: Slot, error: UpstreamError) {
    const index = slots.indexOf(slot);
    if (index >= 0) slots[index] = undefined;
    const waiting = [...slot.pending.values()];
    slot.pending.clear();
    for (const waiter of waiting) {
      settle(waiter);
      waiter.reject(error);
    }
    retire(slot);
  }

  function open(): Slot {
    const { socket, ready } = connectUdpSocket(host, port, options.lookup);
    const slot: Slot = {
      socket,
      ready,
      connected: false,
      pending: new Map(),
      uses: 0,
      retired: false,
    };
    ready.then(
      () => {
        slot.connected = true;
      },
      () => {},
    );
    socket.on("error", (error) =>
      fail(slot, new UpstreamError("send", name, undefined, { cause: error })),
    );
    // A connected socket only receives from the server; the ID picks the query.
    socket.on("message", (msg) => {
      if (msg.length < 12) return;
      // Each datagram arrives in memory of its own.
      const answer = plainBytes(msg);
      const id = readId(answer);
      const waiter = slot.pending.get(id);
      if (!waiter) return;
      slot.pending.delete(id);
      settle(waiter);
      closeIfDone(slot);
      if ((answer[2]! & 0x02) !== 0) {
        // TC: the whole answer over TCP.
        tcpExchange(options, waiter.query, waiter.signal).then(waiter.resolve, waiter.reject);
        return;
      }
      // The answer is ours alone (a view of the received datagram): the caller's ID goes back in place.
      setId(answer, readId(waiter.query));
      waiter.resolve(answer);
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

  /** Sends with the slot's ID; a send error reaches the socket's "error" event (fail). */
  function send(slot: Slot, id: number, message: Uint8Array) {
    try {
      slot.socket.send(withId(message, id));
    } catch (error) {
      fail(slot, new UpstreamError("send", name, undefined, { cause: error }));
    }
  }

  function exchange(message: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    if (signal.aborted) return Promise.reject(abortedBy(signal, name));
    const slot = pick();
    let id = randomId();
    while (slot.pending.has(id)) id = (id + 1) & 0xffff;
    const { promise: answer, resolve, reject } = Promise.withResolvers<Uint8Array>();
    const waiter: Waiter = {
      query: message,
      resolve,
      reject,
      signal,
      onAbort: () => {
        if (slot.pending.get(id) !== waiter) return;
        slot.pending.delete(id);
        closeIfDone(slot);
        reject(abortedBy(signal, name));
      },
    };
    signal.addEventListener("abort", waiter.onAbort, { once: true });
    slot.pending.set(id, waiter);
    if (slot.connected) send(slot, id, message);
    else {
      slot.ready.then(
        () => {
          if (slot.pending.get(id) === waiter) send(slot, id, message);
        },
        (error: unknown) =>
          fail(slot, new UpstreamError("send", name, undefined, { cause: error })),
      );
    }
    return answer;
  }

  return {
    name,
    query(message, signal) {
      if (closed) return Promise.reject(new UpstreamError("closed", name));
      const bad = unsendable(message, name);
      if (bad) return Promise.reject(bad);
      return exchange(message, signal);
    },
    async close() {
      closed = true;
      for (const slot of [...live]) fail(slot, new UpstreamError("closed", name));
    },
  };
}
