// An Upstream used on its own, outside a race (the relay's origin endpoint
// asks one by name), still counted and still feeding health: the same
// attempt accounting a race does, around each query. A tracked upstream is
// an Upstream itself, so it nests where the bare one would go.

import { readId } from "../dns/wire.ts";
import type { Clock } from "./clock.ts";
import type { Counters } from "./counters.ts";
import { errorClassOf, toUpstreamError } from "./errors.ts";
import type { HealthTracker } from "./health.ts";
import type { Upstream } from "./upstream.ts";
import { checkAnswer } from "./winner.ts";

export interface TrackingOptions {
  counters: Counters;
  /** The health of every route the upstream serves in. */
  healths: readonly HealthTracker[];
  clock: Clock;
}

export function createTrackedUpstream(upstream: Upstream, options: TrackingOptions): Upstream {
  const { name } = upstream;
  const { counters, healths, clock } = options;
  const tracked: Upstream = {
    name,
    async query(message, signal) {
      counters.attemptStarted(name);
      for (const h of healths) h.attemptStarted(name);
      const started = clock.now();
      let answer: Uint8Array;
      try {
        answer = await upstream.query(message, signal);
      } catch (raw) {
        const error = toUpstreamError(raw, name);
        // The caller giving up says nothing about the upstream.
        if (signal.aborted && error.code === "aborted") {
          counters.attemptCancelled(name);
          for (const h of healths) h.attemptCancelled(name);
        } else failed(error);
        throw error;
      }
      // A bad answer (wrong question, no QR bit, ...) is the upstream's failure, as in a race.
      const rcode = checkAnswer(message, readId(message), answer, name);
      if (typeof rcode !== "number") {
        failed(rcode);
        throw rcode;
      }
      const latency = clock.now() - started;
      counters.attemptSucceeded(name, rcode, latency);
      for (const h of healths) h.attemptSucceeded(name, latency);
      return answer;
    },
    close: () => upstream.close(),
  };
  const failed = (error: ReturnType<typeof toUpstreamError>) => {
    counters.attemptFailed(name, errorClassOf(error));
    for (const h of healths) h.attemptFailed(name, error.code);
  };
  if (upstream.poolStats) tracked.poolStats = () => upstream.poolStats!();
  return tracked;
}
