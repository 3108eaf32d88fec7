// A scripted in-process Upstream: per call it answers with an RCODE after a
// delay on the manual clock, throws a typed error, answers with a wrong ID or
// question, sends garbage, or hangs until aborted. It records what happened.

import type { Clock } from "../../../shared/engine/clock.ts";
import { UpstreamError, type UpstreamErrorCode } from "../../../shared/engine/errors.ts";
import type { Upstream } from "../../../shared/engine/upstream.ts";
import { respond } from "./dns-messages.ts";

export type Behaviour =
  | { rcode: number; after?: number; id?: number; name?: string; noQuestion?: boolean }
  | { error: UpstreamErrorCode; after?: number }
  | { bytes: Uint8Array; after?: number }
  | { hang: true };

export type Script =
  | Behaviour
  | readonly Behaviour[]
  | ((call: number, query: Uint8Array) => Behaviour);

/** Shared across fakes: how many attempts are in flight right now, and the most ever. */
export interface InFlightTracker {
  current: number;
  max: number;
}

export interface FakeUpstream extends Upstream {
  /** Calls so far. */
  readonly calls: number;
  readonly inFlight: number;
  readonly maxInFlight: number;
  /** Signals passed in, one per call. */
  readonly signals: AbortSignal[];
  /** Clock time of each call. */
  readonly startedAt: number[];
  /** Calls that ended because their signal aborted. */
  readonly aborted: number;
  readonly closed: boolean;
}

export function createFakeUpstream(
  name: string,
  clock: Clock,
  script: Script,
  tracker?: InFlightTracker,
): FakeUpstream {
  let calls = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  let aborted = 0;
  let closed = false;
  const signals: AbortSignal[] = [];
  const startedAt: number[] = [];

  const behaviourFor = (call: number, query: Uint8Array): Behaviour => {
    if (typeof script === "function") return script(call, query);
    if (Array.isArray(script)) return script[call % script.length]!;
    return script as Behaviour;
  };

  return {
    name,
    get calls() {
      return calls;
    },
    get inFlight() {
      return inFlight;
    },
    get maxInFlight() {
      return maxInFlight;
    },
    signals,
    startedAt,
    get aborted() {
      return aborted;
    },
    get closed() {
      return closed;
    },
    query(message, signal) {
      const call = calls++;
      signals.push(signal);
      startedAt.push(clock.now());
      const behaviour = behaviourFor(call, message);
      return new Promise<Uint8Array>((resolve, reject) => {
        if (closed) {
          reject(new UpstreamError("closed", name));
          return;
        }
        if (signal.aborted) {
          aborted++;
          reject(new UpstreamError("aborted", name, `${name}: aborted before start`));
          return;
        }
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        if (tracker) {
          tracker.current++;
          tracker.max = Math.max(tracker.max, tracker.current);
        }
        let timer: unknown;
        const end = () => {
          inFlight--;
          if (tracker) tracker.current--;
          signal.removeEventListener("abort", onAbort);
          clock.clearTimeout(timer);
        };
        const onAbort = () => {
          end();
          aborted++;
          reject(new UpstreamError("aborted", name, `${name}: aborted`, { cause: signal.reason }));
        };
        signal.addEventListener("abort", onAbort);
        if ("hang" in behaviour) return;
        timer = clock.setTimeout(() => {
          end();
          if ("error" in behaviour) reject(new UpstreamError(behaviour.error, name));
          else if ("bytes" in behaviour) resolve(behaviour.bytes);
          else resolve(respond(message, behaviour.rcode, behaviour));
        }, behaviour.after ?? 0);
      });
    },
    async close() {
      closed = true;
    },
  };
}
