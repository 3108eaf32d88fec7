// The per-query path every listener uses: ACL → per-client limits →
// resolver (with a signal tied to the client and to shutdown; it answers
// FORMERR for an unreadable question) → answer. Every accepted query gets an
// answer: the resolver's, or SERVFAIL if it throws. Returns undefined, and
// answers nothing, for bytes shorter than a DNS header (no ID to answer) and
// for a message with the QR bit set (a response: answering could loop).

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
import type { Resolver } from "../../shared/resolver/create-resolver.ts";
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

/** The resolver's answer and its RCODE name; SERVFAIL (logged) when it throws. */
async function resolveLogged(
  options: QueryHandlerOptions,
  query: Uint8Array,
  signal: AbortSignal,
  servfailLog: ReturnType<typeof createLogThrottle>,
): Promise<{ answer: Uint8Array; rcode: string | undefined }> {
  const { logger } = options;
  try {
    const outcome = await options.resolver().resolve(query, signal);
    const answer = outcome.answer;
    if (outcome.kind === "servfail" || (outcome.kind === "answer" && isServfail(answer))) {
      const take = servfailLog.take();
      if (take) {
        logger.warn("servfail", {
          name: nameOf(query),
          route: outcome.route,
          ...(outcome.kind === "servfail"
            ? { error: outcome.error }
            : { from_upstream: outcome.upstream }),
          ...(take.suppressed > 0 ? { more_since_last: take.suppressed } : {}),
        });
      }
    }
    const known = outcome.kind === "answer" ? outcome.rcode : undefined;
    return { answer, rcode: known === undefined ? undefined : rcodeText(known) };
  } catch (error) {
    logger.warn("resolve failed", { name: nameOf(query), error });
    const ede = { code: EdeCode.OTHER, text: "internal error" };
    return { answer: buildErrorResponse(query, Rcode.SERVFAIL, { ede }), rcode: undefined };
  }
}

export function createQueryHandler(options: QueryHandlerOptions): QueryHandler {
  const { metrics, logger } = options;
  let inFlight = 0;
  let waiters: (() => void)[] = [];
  /** SERVFAILs are logged at warn, at most one line per 10 s. */
  const servfailLog = createLogThrottle(10_000);
  const querySignal = createQuerySignals(options.shutdown);
  const allowed = createAclCheck(options.allow);

  function refuse(query: Uint8Array, client: ClientInfo, reason: string, started: number) {
    metrics.refused(reason);
    const answer = buildErrorResponse(query, Rcode.REFUSED, {
      ede: { code: EdeCode.PROHIBITED, text: reason.replace(/_/g, " ") },
    });
    metrics.query(client.protocol, "REFUSED", (performance.now() - started) / 1000);
    return answer;
  }

  return {
    get inFlight() {
      return inFlight;
    },
    drained() {
      if (inFlight === 0) return Promise.resolve();
      return new Promise((resolve) => waiters.push(resolve));
    },
    async handle(query, client) {
      const started = performance.now();
      if (query.length < 12) {
        metrics.dropped(client.protocol, "short");
        return undefined;
      }
      if (!allowed(client.address)) return refuse(query, client, "acl", started);
      if (!isQuery(query)) {
        // A response (QR=1) sent to us: never answer it (no reflection loops).
        metrics.dropped(client.protocol, "not_a_query");
        return undefined;
      }
      // An unreadable question comes back from the resolver as FORMERR.
      const limits = options.limits();
      const admission = limits.admit(client.address);
      if (admission !== "ok") return refuse(query, client, admission, started);

      inFlight++;
      metrics.inFlight(1);
      let resolved: Awaited<ReturnType<typeof resolveLogged>>;
      try {
        resolved = await resolveLogged(options, query, querySignal(client.signal), servfailLog);
      } finally {
        limits.release(client.address);
        inFlight--;
        metrics.inFlight(-1);
        if (inFlight === 0) {
          const ready = waiters;
          waiters = [];
          for (const w of ready) w();
        }
      }
      const { answer } = resolved;
      const rcode = resolved.rcode ?? rcodeName(answer);
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
    },
  };
}
