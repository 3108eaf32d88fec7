// A route's race options checked once, with their defaults filled in: what
// every query of the route reads (createRace passes it to each QueryRun).

import type { Clock } from "./clock.ts";
import type { Counters } from "./counters.ts";
import { EngineConfigError, type ErrorClass, type UpstreamError } from "./errors.ts";
import type { HealthTracker } from "./health.ts";
import { type AutoHedgeOptions, type HedgeDelay, validateHedgeDelay } from "./hedge.ts";
import type { RaceConfig, RaceMember } from "./race.ts";
import type { Upstream } from "./upstream.ts";
import { type WinnerMode, winnerMode } from "./winner.ts";

const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_MAX_CONCURRENT_ATTEMPTS = 8;

/** One upstream of the route, checked. */
export interface Member {
  readonly upstream: Upstream;
  readonly name: string;
  readonly weight: number;
  readonly timeoutMs: number | undefined;
}

/** What a query of the route needs to run. */
export interface RaceSettings {
  readonly name: string;
  readonly timeoutMs: number;
  /** Attempts in flight at once: worker_count, capped by maxConcurrentAttempts. */
  readonly limit: number;
  /** Set only when more than one attempt may run at once. */
  readonly hedgeDelay: HedgeDelay | undefined;
  readonly autoHedge: AutoHedgeOptions | undefined;
  readonly mode: WinnerMode;
  readonly clock: Clock;
  readonly health: HealthTracker;
  readonly counters: Counters;
  /** The debug hook; it never throws. */
  report(upstream: string, errorClass: ErrorClass, error: UpstreamError): void;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new EngineConfigError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

function positiveMs(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new EngineConfigError(`${name} must be a positive number of ms, got ${value}`);
  }
  return value;
}

function toMember(entry: Upstream | RaceMember): Member {
  const m: RaceMember = "upstream" in entry ? entry : { upstream: entry };
  const name = m.upstream.name;
  const weight = m.weight ?? 100;
  if (!Number.isFinite(weight) || weight < 1 || weight > 100) {
    throw new EngineConfigError(`upstream "${name}": weight must be 1-100, got ${weight}`);
  }
  const timeoutMs =
    m.timeoutMs === undefined ? undefined : positiveMs(`upstream "${name}": timeout`, m.timeoutMs);
  return { upstream: m.upstream, name, weight, timeoutMs };
}

/** The route's members: at least one, no name twice. Throws EngineConfigError. */
export function raceMembers(name: string, upstreams: RaceConfig["upstreams"]): Member[] {
  const members = upstreams.map(toMember);
  if (members.length === 0) throw new EngineConfigError(`route "${name}" has no upstreams`);
  const names = new Set(members.map((m) => m.name));
  if (names.size !== members.length) {
    throw new EngineConfigError(`route "${name}" lists an upstream twice`);
  }
  return members;
}

/** Checks the options (throws EngineConfigError) and fills in the defaults. */
export function raceSettings(
  name: string,
  config: RaceConfig,
  services: { clock: Clock; health: HealthTracker; counters: Counters },
): RaceSettings {
  const workerCount = positiveInteger("worker_count", config.workerCount ?? 1);
  const timeoutMs = positiveMs("timeout", config.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const maxConcurrent = positiveInteger(
    "maxConcurrentAttempts",
    config.maxConcurrentAttempts ?? DEFAULT_MAX_CONCURRENT_ATTEMPTS,
  );
  validateHedgeDelay(config.hedgeDelayMs);
  if (config.raceContinueOnError && !config.race) {
    throw new EngineConfigError("race_continue_on_error needs race");
  }
  const limit = Math.min(workerCount, maxConcurrent);
  const onAttemptError = config.onAttemptError;
  return {
    name,
    timeoutMs,
    limit,
    hedgeDelay: limit > 1 ? config.hedgeDelayMs : undefined,
    autoHedge: config.autoHedge,
    mode: winnerMode(config.race ?? false, config.raceContinueOnError ?? false),
    ...services,
    report(upstream, errorClass, error) {
      try {
        onAttemptError?.(upstream, errorClass, error);
      } catch {
        // a debug hook must never break a query
      }
    },
  };
}
