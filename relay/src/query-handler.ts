// The per-query path every listener uses: ACL → per-client limits →
// resolver (with a signal tied to the client and to shutdown; it answers
// FORMERR for an unreadable question) → answer. Every accepted query gets an
// answer: the resolver's, or SERVFAIL if it throws. Returns undefined, and
// answers nothing, for bytes shorter than a DNS header (no ID to answer) and
// for a message with the QR bit set (a response: answering could loop).

import { performance } from "node:perf_hooks";
import { type Cidr, cidrContains, normalizeIp, tryParseIp } from "../../shared/config/ip.ts";
import { rcodeText } from "../../shared/dns/codes.ts";
import {
  buildErrorResponse,
  EdeCode,
  isQuery,
  Rcode,
  readQuestion,
  readRcode,
} from "../../shared/dns/wire.ts";
import type { ResolveOutcome, Resolver } from "../../shared/resolver/create-resolver.ts";
import { createLogThrottle } from "../../shared/resolver/log-throttle.ts";
import type { ClientLimits } from "./client-limits.ts";
import type { Logger } from "./log.ts";
import type { RelayMetrics } from "./metrics.ts";

export interface ClientInfo {
  /** Remote address as the socket reports it. */
  address: string;
  protocol: "udp" | "tcp" | "dot" | "doh";
  /** Aborted when the client goes away. */
  signal?: AbortSignal;
}

export interface QueryHandlerOptions {
  allow: () => readonly Cidr[];
  limits: () => ClientLimits;
  resolver: () => Resolver;
  metrics: RelayMetrics;
  logger: Logger;
  /** Aborted at shutdown after the drain deadline. */
  shutdown: AbortSignal;
}

export interface QueryHandler {
  handle(query: Uint8Array, client: ClientInfo): Promise<Uint8Array | undefined>;
  readonly inFlight: number;
  /** Resolves when nothing is in flight. */
  drained(): Promise<void>;
}

function isServfail(answer: Uint8Array): boolean {
  return answer.length >= 12 && (answer[3]! & 0x0f) === Rcode.SERVFAIL;
}

export function rcodeName(answer: Uint8Array): string {
  try {
    return rcodeText(readRcode(answer));
  } catch {
    return "unknown";
  }
}

/** The query name for logs: readQuestion's escaped presentation form, safe in a log line. */
function nameOf(query: Uint8Array): string | undefined {
  try {
    return readQuestion(query).name;
  } catch {
    return undefined;
  }
}

/** Bound of the per-address ACL verdict cache (cleared when full). */
const MAX_CACHED_VERDICTS = 4096;

/** Whether an address is allowed, remembered per address for the current allow list. */
function createAclCheck(allowList: () => readonly Cidr[]): (address: string) => boolean {
  // Verdicts per source address, for the current allow list (reload swaps it).
  let verdicts = new Map<string, boolean>();
  let verdictsFor: readonly Cidr[] | undefined;
  return (address) => {
    const allow = allowList();
    if (allow !== verdictsFor) {
      verdicts = new Map();
      verdictsFor = allow;
    }
    const known = verdicts.get(address);
    if (known !== undefined) return known;
    const ip = tryParseIp(address.replace(/%.*$/, ""));
    const verdict = ip !== undefined && allow.some((cidr) => cidrContains(cidr, normalizeIp(ip)));
    if (verdicts.size >= MAX_CACHED_VERDICTS) verdicts.clear();
    verdicts.set(address, verdict);
    return verdict;
  };
}

/**
 * The query signal per client signal (a TCP or DoT connection's): aborted by
 * the client or at shutdown, made once per connection rather than per query.
 */
function createQuerySignals(shutdown: AbortSignal): (client?: AbortSignal) => AbortSignal {
  const withShutdown = new WeakMap<AbortSignal, AbortSignal>();
  return (client) => {
    if (!client) return shutdown;
    let signal = withShutdown.get(client);
    if (!signal) {
      signal = AbortSignal.any([shutdown, client]);
      withShutdown.set(client, signal);
    }
    return signal;
  };
}

/** Logs a SERVFAIL outcome (the resolver's, or an upstream's SERVFAIL answer), throttled. */
function logServfail(
  logger: Logger,
  query: Uint8Array,
  outcome: ResolveOutcome,
  servfailLog: ReturnType<typeof createLogThrottle>,
) {
  const take = servfailLog.take();
  if (!take || (outcome.kind !== "servfail" && outcome.kind !== "answer")) return;
  logger.warn("servfail", {
    name: nameOf(query),
    route: outcome.route,
    ...(outcome.kind === "servfail"
      ? { error: outcome.error }
      : { from_upstream: outcome.upstream }),
    ...(take.suppressed > 0 ? { more_since_last: take.suppressed } : {}),
  });
}

/** The SERVFAIL for a resolver that threw (a bug, logged): still an answer. */
function internalError(logger: Logger, query: Uint8Array, error: unknown): Uint8Array {
  logger.warn("resolve failed", { name: nameOf(query), error });
  const ede = { code: EdeCode.OTHER, text: "internal error" };
  return buildErrorResponse(query, Rcode.SERVFAIL, { ede });
}

export function createQueryHandler(options: QueryHandlerOptions): QueryHandler {
  return new Handler(options);
}

// A class rather than closures: this runs for every query.
class Handler implements QueryHandler {
  private readonly options: QueryHandlerOptions;
  private count = 0;
  private waiters: (() => void)[] = [];
  /** SERVFAILs are logged at warn, at most one line per 10 s. */
  private readonly servfailLog = createLogThrottle(10_000);
  private readonly querySignal: (client?: AbortSignal) => AbortSignal;
  private readonly allowed: (address: string) => boolean;

  constructor(options: QueryHandlerOptions) {
    this.options = options;
    this.querySignal = createQuerySignals(options.shutdown);
    this.allowed = createAclCheck(options.allow);
  }

  get inFlight() {
    return this.count;
  }

  drained(): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  handle(query: Uint8Array, client: ClientInfo): Promise<Uint8Array | undefined> {
    try {
      const result = this.start(query, client);
      return result instanceof Promise ? result : Promise.resolve(result);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The answer, or undefined for nothing to answer; throws only for a bug. */
  private start(
    query: Uint8Array,
    client: ClientInfo,
  ): Uint8Array | undefined | Promise<Uint8Array | undefined> {
    const { metrics } = this.options;
    const started = performance.now();
    if (query.length < 12) {
      metrics.dropped(client.protocol, "short");
      return undefined;
    }
    if (!this.allowed(client.address)) return this.refuse(query, client, "acl", started);
    if (!isQuery(query)) {
      // A response (QR=1) sent to us: never answer it (no reflection loops).
      metrics.dropped(client.protocol, "not_a_query");
      return undefined;
    }
    // An unreadable question comes back from the resolver as FORMERR.
    const limits = this.options.limits();
    const admission = limits.admit(client.address);
    if (admission !== "ok") return this.refuse(query, client, admission, started);

    this.count++;
    metrics.inFlight(1);
    // One promise step per query: no async frames between the resolver and the listener.
    let resolving: Promise<ResolveOutcome>;
    try {
      resolving = this.options.resolver().resolve(query, this.querySignal(client.signal));
    } catch (error) {
      resolving = Promise.reject(error);
    }
    return resolving.then(
      (outcome) => this.resolved(query, client, limits, started, outcome),
      (error: unknown) => {
        this.release(client, limits);
        return this.answered(
          query,
          client,
          started,
          internalError(this.options.logger, query, error),
        );
      },
    );
  }

  private refuse(query: Uint8Array, client: ClientInfo, reason: string, started: number) {
    const { metrics } = this.options;
    metrics.refused(reason);
    const answer = buildErrorResponse(query, Rcode.REFUSED, {
      ede: { code: EdeCode.PROHIBITED, text: reason.replace(/_/g, " ") },
    });
    metrics.query(client.protocol, "REFUSED", (performance.now() - started) / 1000);
    return answer;
  }

  /** The query's place given back (admission, in-flight count): first, whatever happens next. */
  private release(client: ClientInfo, limits: ClientLimits) {
    limits.release(client.address);
    this.count--;
    this.options.metrics.inFlight(-1);
    if (this.count === 0) {
      const ready = this.waiters;
      this.waiters = [];
      for (const w of ready) w();
    }
  }

  private resolved(
    query: Uint8Array,
    client: ClientInfo,
    limits: ClientLimits,
    started: number,
    outcome: ResolveOutcome,
  ): Uint8Array {
    this.release(client, limits);
    const { answer } = outcome;
    if (outcome.kind === "servfail" || (outcome.kind === "answer" && isServfail(answer))) {
      logServfail(this.options.logger, query, outcome, this.servfailLog);
    }
    const known = outcome.kind === "answer" ? outcome.rcode : undefined;
    const rcode = known === undefined ? undefined : rcodeText(known);
    return this.answered(query, client, started, answer, rcode);
  }

  /** Counts and (at debug) logs an answered query; `rcode` when the resolver read it already. */
  private answered(
    query: Uint8Array,
    client: ClientInfo,
    started: number,
    answer: Uint8Array,
    rcode = rcodeName(answer),
  ): Uint8Array {
    const { metrics, logger } = this.options;
    const seconds = (performance.now() - started) / 1000;
    metrics.query(client.protocol, rcode, seconds);
    if (logger.level === "debug") {
      logger.debug("query", {
        client: client.address,
        protocol: client.protocol,
        name: nameOf(query),
        rcode,
        ms: Math.round(seconds * 1000),
      });
    }
    return answer;
  }
}
