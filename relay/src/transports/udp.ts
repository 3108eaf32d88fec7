// Plain DNS over UDP through a small set of connected sockets per upstream,
// queries multiplexed by a random message ID (restored to the caller's on
// the way back). Opening, binding and closing a socket per query cost more
// than the rest of the relay's per-query work; sockets are still replaced
// after a number of queries so source ports keep changing (RFC 5452). An
// answer with TC=1 is retried over TCP (RFC 7766 §5).

import { Buffer } from "node:buffer";
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
  return new UdpUpstream(options);
}

class UdpUpstream implements Upstream {
  readonly name: string;
  private readonly options: UdpUpstreamOptions;
  private readonly slots: (Slot | undefined)[];
  private readonly queriesPerSocket: number;
  /** Every open socket, retired ones still awaiting answers included. */
  private readonly live = new Set<Slot>();
  private turn = 0;
  private closed = false;
  private readonly randomId = createIdSource();

  constructor(options: UdpUpstreamOptions) {
    this.name = options.name;
    this.options = options;
    this.slots = new Array(options.sockets ?? 4).fill(undefined);
    this.queriesPerSocket = options.queriesPerSocket ?? 2000;
  }

  query(message: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new UpstreamError("closed", this.name));
    const bad = unsendable(message, this.name);
    if (bad) return Promise.reject(bad);
    return this.exchange(message, signal);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const slot of [...this.live]) this.fail(slot, new UpstreamError("closed", this.name));
  }

  private exchange(message: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    if (signal.aborted) return Promise.reject(abortedBy(signal, this.name));
    const slot = this.pick();
    let id = this.randomId();
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
        this.closeIfDone(slot);
        reject(abortedBy(signal, this.name));
      },
    };
    signal.addEventListener("abort", waiter.onAbort, { once: true });
    slot.pending.set(id, waiter);
    if (slot.connected) this.send(slot, id, message);
    else {
      slot.ready.then(
        () => {
          if (slot.pending.get(id) === waiter) this.send(slot, id, message);
        },
        (error: unknown) =>
          this.fail(slot, new UpstreamError("send", this.name, undefined, { cause: error })),
      );
    }
    return answer;
  }

  /** The next socket in turn, replaced by a fresh one once it carried its share of queries. */
  private pick(): Slot {
    const index = this.turn++ % this.slots.length;
    let slot = this.slots[index];
    if (slot && slot.uses >= this.queriesPerSocket) {
      this.retire(slot);
      slot = undefined;
    }
    if (!slot) {
      slot = this.open();
      this.slots[index] = slot;
    }
    slot.uses++;
    return slot;
  }

  private open(): Slot {
    const { socket, ready } = connectUdpSocket(
      this.options.host,
      this.options.port,
      this.options.lookup,
    );
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
      this.fail(slot, new UpstreamError("send", this.name, undefined, { cause: error })),
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
      waiter.signal.removeEventListener("abort", waiter.onAbort);
      this.closeIfDone(slot);
      if ((answer[2]! & 0x02) !== 0) {
        // TC: the whole answer over TCP.
        tcpExchange(this.options, waiter.query, waiter.signal).then(waiter.resolve, waiter.reject);
        return;
      }
      // The answer is ours alone (a view of the received datagram): the caller's ID goes back in place.
      setId(answer, readId(waiter.query));
      waiter.resolve(answer);
    });
    this.live.add(slot);
    return slot;
  }

  /** Sends with the slot's ID; a send error reaches the socket's "error" event (fail). */
  private send(slot: Slot, id: number, message: Uint8Array) {
    try {
      // From Node's pooled slab: a fresh small Uint8Array lives on the V8
      // heap, and dgram would move it off the heap on every send.
      slot.socket.send(withId(message, id, Buffer.allocUnsafe));
    } catch (error) {
      this.fail(slot, new UpstreamError("send", this.name, undefined, { cause: error }));
    }
  }

  private fail(slot: Slot, error: UpstreamError) {
    const index = this.slots.indexOf(slot);
    if (index >= 0) this.slots[index] = undefined;
    const waiting = [...slot.pending.values()];
    slot.pending.clear();
    for (const waiter of waiting) {
      waiter.signal.removeEventListener("abort", waiter.onAbort);
      waiter.reject(error);
    }
    this.retire(slot);
  }

  private retire(slot: Slot) {
    slot.retired = true;
    this.closeIfDone(slot);
  }

  private closeIfDone(slot: Slot) {
    if (slot.retired && slot.pending.size === 0 && this.live.delete(slot)) slot.socket.close();
  }
}
