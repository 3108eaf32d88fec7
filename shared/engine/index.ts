// The selection, health and race engine: one query in, attempts on
// upstreams, one answer (or a SERVFAIL-ready failure) out.

export { type Clock, systemClock, type TimerHandle } from "./clock.ts";
export {
  type Counters,
  createCounters,
  DEFAULT_LATENCY_BUCKETS_MS,
  type LatencySnapshot,
  type UpstreamCounterSnapshot,
} from "./counters.ts";
export {
  EngineConfigError,
  ERROR_CLASSES,
  type ErrorClass,
  errorClassOf,
  toUpstreamError,
  UPSTREAM_ERROR_CODES,
  UpstreamError,
  type UpstreamErrorCode,
  type UpstreamErrorOptions,
} from "./errors.ts";
export {
  createHealthTracker,
  type HealthOptions,
  type HealthTracker,
  type UpstreamHealth,
  type UpstreamHealthView,
} from "./health.ts";
export {
  createHealthChecker,
  type HealthChecker,
  type HealthCheckOptions,
  type Probe,
} from "./health-check.ts";
export { type AutoHedgeOptions, type HedgeDelay, hedgeDelayFor } from "./hedge.ts";
export { createLatencyWindow, type LatencyWindow } from "./latency-window.ts";
export { createManualClock, type ManualClock } from "./manual-clock.ts";
export {
  createPolicy,
  POLICY_NAMES,
  type Policy,
  type PolicyCandidate,
  type PolicyConfig,
  type PolicyContext,
  type PolicyName,
  weightedPicks,
} from "./policies.ts";
export {
  createDnsProbe,
  createHttpProbe,
  type DnsProbeOptions,
  type HttpProbeOptions,
} from "./probes.ts";
export {
  createRace,
  type Ede,
  type Race,
  type RaceConfig,
  type RaceFailure,
  type RaceMember,
  type RaceOptions,
  type RaceResult,
  type RaceSuccess,
  toServfail,
} from "./race.ts";
export {
  createCryptoRandom,
  createSeededRandom,
  type Random,
  randomIndex,
  shuffled,
} from "./random.ts";
export type { Upstream } from "./upstream.ts";
export { answerRank, checkAnswer, endsRace, type WinnerMode, winnerMode } from "./winner.ts";
