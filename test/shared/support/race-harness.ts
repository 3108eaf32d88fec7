// A race over scripted fake upstreams on a manual clock, for engine tests.

import { createCounters } from "../../../shared/engine/counters.ts";
import type { ErrorClass, UpstreamError } from "../../../shared/engine/errors.ts";
import { createHealthTracker, type HealthOptions } from "../../../shared/engine/health.ts";
import { createManualClock } from "../../../shared/engine/manual-clock.ts";
import { createRace, type RaceConfig, type RaceResult } from "../../../shared/engine/race.ts";
import { createSeededRandom } from "../../../shared/engine/random.ts";
import { buildQuery } from "./dns-messages.ts";
import {
  createFakeUpstream,
  type FakeUpstream,
  type InFlightTracker,
  type Script,
} from "./fake-upstream.ts";
import { runUntil } from "./time.ts";

export interface HarnessOptions extends Omit<Partial<RaceConfig>, "upstreams"> {
  healthOptions?: Omit<HealthOptions, "clock">;
  /** Per-upstream weight / timeout, by name. */
  weights?: Record<string, number>;
  timeouts?: Record<string, number>;
  seed?: number;
}

export function createHarness(scripts: Record<string, Script>, options: HarnessOptions = {}) {
  const clock = createManualClock(1000);
  const tracker: InFlightTracker = { current: 0, max: 0 };
  const fakes: Record<string, FakeUpstream> = {};
  for (const [name, script] of Object.entries(scripts)) {
    fakes[name] = createFakeUpstream(name, clock, script, tracker);
  }
  const health = options.health ?? createHealthTracker({ clock, ...options.healthOptions });
  const counters = options.counters ?? createCounters();
  const attemptErrors: { upstream: string; errorClass: ErrorClass; error: UpstreamError }[] = [];
  const race = createRace({
    clock,
    random: createSeededRandom(options.seed ?? 7),
    health,
    counters,
    onAttemptError: (upstream, errorClass, error) =>
      attemptErrors.push({ upstream, errorClass, error }),
    ...options,
    upstreams: Object.values(fakes).map((upstream) => ({
      upstream,
      weight: options.weights?.[upstream.name],
      timeoutMs: options.timeouts?.[upstream.name],
    })),
  });
  let nextId = 1;
  const query = (name = "example.com.", type = 1) => buildQuery(name, type, { id: nextId++ });
  /** Resolves one query, driving the clock until it settles; also returns when it settled. */
  const resolve = async (q = query(), signal?: AbortSignal) => {
    const startedAt = clock.now();
    const result: RaceResult = await runUntil(clock, race.resolve(q, signal));
    return { result, elapsed: clock.now() - startedAt, query: q };
  };
  const totalCalls = () => Object.values(fakes).reduce((sum, f) => sum + f.calls, 0);
  const totalInFlight = () => Object.values(fakes).reduce((sum, f) => sum + f.inFlight, 0);
  return {
    clock,
    fakes,
    tracker,
    health,
    counters,
    race,
    attemptErrors,
    query,
    resolve,
    totalCalls,
    totalInFlight,
  };
}
