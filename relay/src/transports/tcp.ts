// One DNS exchange over a fresh TCP connection: the UDP transport's retry
// for truncated answers (tcp:// upstreams use the pipelined stream pool).
// Length-prefixed framing, random ID restored on the way back.

import { randomInt } from "node:crypto";
import { connect } from "node:net";
import { createFrameReader, frameMessage } from "../../../shared/dns/framing.ts";
import { readId, setId } from "../../../shared/dns/wire.ts";
import type { Clock } from "../../../shared/engine/clock.ts";
import { abortedBy, UpstreamError } from "../../../shared/engine/errors.ts";
import type { LookupFunction } from "./bootstrap.ts";
import { relayClock } from "./relay-clock.ts";

export interface TcpUpstreamOptions {
  name: string;
  host: string;
  port: number;
  /** TCP connect budget, ms. */
  connectTimeoutMs: number;
  /** Host name resolution (the bootstrap servers); the system resolver otherwise. */
  lookup?: LookupFunction | undefined;
  clock?: Clock;
}

/** One query on a fresh connection; resolves with the answer carrying the query's ID. */
export function tcpExchange(
  options: TcpUpstreamOptions,
  message: Uint8Array,
  signal: AbortSignal,
): Promise<Uint8Array> {
  const { name, host, port } = options;
  const clientId = readId(message);
  const id = randomInt(0x10000);
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(abortedBy(signal, name));
      return;
    }
    let connected = false;
    const socket = connect({ host, port, ...(options.lookup ? { lookup: options.lookup } : {}) });
    const clock = options.clock ?? relayClock;
    const timer = clock.setTimeout(
      () => finish(new UpstreamError("connect", name, `${name}: connect timeout`)),
      options.connectTimeoutMs,
    );
    const finish = (error: UpstreamError | undefined, answer?: Uint8Array) => {
      clock.clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      if (error) reject(error);
      else resolve(answer as Uint8Array);
    };
    const onAbort = () => finish(abortedBy(signal, name));
    signal.addEventListener("abort", onAbort, { once: true });
    const reader = createFrameReader();
    socket.on("connect", () => {
      connected = true;
      clock.clearTimeout(timer);
      socket.write(frameMessage(message, id));
    });
    socket.on("data", (chunk) => {
      for (const answer of reader.push(chunk)) {
        if (answer.length >= 12 && readId(answer) === id) {
          // Ours alone (a plain view of this chunk): the caller's ID goes back in place.
          setId(answer, clientId);
          finish(undefined, answer);
          return;
        }
      }
    });
    socket.on("error", (error) =>
      finish(new UpstreamError(connected ? "read" : "connect", name, undefined, { cause: error })),
    );
    socket.on("close", () =>
      finish(new UpstreamError("read", name, `${name}: connection closed before the answer`)),
    );
  });
}
