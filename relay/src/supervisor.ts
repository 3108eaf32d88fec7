// workers: N. The primary process forks N relay workers with node:cluster
// (each re-runs this same entry: relay/bin, relay/src/cli.ts or the release
// bundle). Where Node sets SO_REUSEPORT (22.12 / 23.1+) each worker binds its
// own sockets and the kernel spreads the load; on older Nodes the workers
// share the primary's sockets (UDP datagrams go to whichever worker reads
// first, TCP connections are handed out round-robin). The primary answers
// no queries.
// It restarts a worker that exits (control: backoff doubling per failure),
// forwards SIGHUP, drains the workers on SIGTERM/SIGINT, and serves
// listen.metrics with the workers' counters summed.

import cluster, { type Worker } from "node:cluster";
import type { ControlConfig, RelayConfig } from "../../shared/config/schema.ts";
import { formatHostPort } from "../../shared/config/upstream-url.ts";
import type { Logger } from "./log.ts";
import { familyTotal, renderWorkerStats, sumMetrics } from "./metrics.ts";
import { type OpsServer, type OpsSource, startOpsServer } from "./ops-server.ts";

/** The env var telling a forked worker its slot, 1…N (stable across restarts). */
export const WORKER_ENV = "DOH_RELAY_WORKER";

const SCRAPE_TIMEOUT_MS = 1000;

/** Supervisor → worker. */
interface ScrapeRequest {
  type: "doh-relay:scrape";
  id: number;
}

/** Worker → supervisor. */
type WorkerMessage =
  | { type: "doh-relay:ready" }
  | {
      type: "doh-relay:scrape";
      id: number;
      metrics: string;
      ready: boolean;
      status: unknown;
    };

type ScrapeReply = Extract<WorkerMessage, { id: number }>;

/** Delay before restart number `failures` (1, 2, …) in a row: doubling, capped. */
export function restartDelay(failures: number, control: ControlConfig): number {
  return Math.min(control.restart_max_backoff, control.restart_backoff * 2 ** (failures - 1));
}

export interface RestartPolicy {
  /** A worker started at `startedAt` exited: the delay before its restart, or undefined to give up. */
  exited(startedAt: number): { delay: number; failures: number } | undefined;
}

/** The control section as a policy: a run of min_stable_run resets the count. */
export function createRestartPolicy(
  control: ControlConfig,
  now: () => number = Date.now,
): RestartPolicy {
  let failures = 0;
  return {
    exited(startedAt) {
      if (now() - startedAt >= control.min_stable_run) failures = 0;
      failures++;
      if (control.max_consecutive_failure > 0 && failures >= control.max_consecutive_failure) {
        return undefined;
      }
      return { delay: restartDelay(failures, control), failures };
    },
  };
}

interface Slot {
  index: number;
  worker: Worker | undefined;
  startedAt: number;
  ready: boolean;
  restarts: number;
  policy: RestartPolicy;
  timer: ReturnType<typeof setTimeout> | undefined;
}

export interface SupervisorOptions {
  config: RelayConfig;
  count: number;
  logger: Logger;
  /** Workers get this long to drain after SIGTERM before SIGKILL. */
  drainMs: number;
  /** Whether each worker binds its own SO_REUSEPORT sockets (else they share the primary's). */
  ownSockets: boolean;
}

/** Runs the workers until a signal stops them; resolves to the exit code. */
export async function runSupervisor(options: SupervisorOptions): Promise<number> {
  const { config, count, logger, ownSockets } = options;
  if (!ownSockets) {
    logger.warn(
      "this Node cannot set SO_REUSEPORT (it needs 22.12 or 23.1+): the workers share one UDP socket, which serves fewer queries/s than one worker; TCP, DoT and DoH connections are spread round-robin",
      { node: process.versions.node },
    );
  }
  const slots: Slot[] = Array.from({ length: count }, (_, i) => ({
    index: i + 1,
    worker: undefined,
    startedAt: 0,
    ready: false,
    restarts: 0,
    policy: createRestartPolicy(config.control),
    timer: undefined,
  }));
  const scraper = createScraper(slots);
  const shutdown = createShutdown(slots, options);
  const forker = createForker(slots, logger, scraper, shutdown);
  forwardSignals(slots, shutdown, logger);

  if (!(await forker.startAll())) {
    shutdown.stop("startup failed", 1);
    return shutdown.finished;
  }
  if (config.listen.metrics) {
    try {
      const ops = await startOpsServer(config.listen.metrics.addr, opsSource(slots, scraper));
      shutdown.closesOnStop(ops);
      logger.info("listening", {
        listener: "metrics",
        address: formatHostPort({ ...config.listen.metrics.addr, port: ops.port }),
      });
    } catch (error) {
      logger.error("startup failed", { error });
      shutdown.stop("startup failed", 1);
      return shutdown.finished;
    }
  }
  logger.info("workers started", {
    workers: slots.map((s) => ({ worker: s.index, pid: s.worker?.process.pid })),
    sockets: ownSockets ? "one per worker (SO_REUSEPORT)" : "shared",
  });
  return shutdown.finished;
}

/** The workers alive now. */
const live = (slots: readonly Slot[]) =>
  slots.flatMap((s) => (s.worker && !s.worker.isDead() ? [s.worker] : []));

interface Scraper {
  /** Each slot's worker's metrics and state, undefined for one down or silent. */
  scrapeAll(): Promise<(ScrapeReply | undefined)[]>;
  /** Hands a worker's reply to the scrape waiting for it. */
  deliver(reply: ScrapeReply): void;
}

/** Asks the workers for their metrics and state, over the cluster's IPC channel. */
function createScraper(slots: readonly Slot[]): Scraper {
  let nextId = 1;
  const waiting = new Map<number, (reply: ScrapeReply) => void>();
  /** One worker's metrics and state, or undefined when it is down or silent. */
  const scrape = (slot: Slot): Promise<ScrapeReply | undefined> => {
    const worker = slot.worker;
    if (!worker || !slot.ready || !worker.isConnected()) return Promise.resolve(undefined);
    const id = nextId++;
    return new Promise((resolve) => {
      const done = (reply: ScrapeReply | undefined) => {
        clearTimeout(timer);
        waiting.delete(id);
        resolve(reply);
      };
      const timer = setTimeout(() => done(undefined), SCRAPE_TIMEOUT_MS);
      waiting.set(id, done);
      const request: ScrapeRequest = { type: "doh-relay:scrape", id };
      // With a callback, a worker that died since isConnected() fails this send
      // here; without one, Node emits it as an 'error' that ends the supervisor.
      worker.send(request, (error: Error | null) => {
        if (error) done(undefined);
      });
    });
  };
  return {
    scrapeAll: () => Promise.all(slots.map(scrape)),
    deliver: (reply) => waiting.get(reply.id)?.(reply),
  };
}

/** listen.metrics for the supervisor: the workers' counters summed, and each worker's state. */
function opsSource(slots: readonly Slot[], { scrapeAll }: Scraper): OpsSource {
  return {
    async metrics() {
      const replies = await scrapeAll();
      const texts = replies.flatMap((r) => (r ? [r.metrics] : []));
      return (
        sumMetrics(texts) +
        renderWorkerStats({
          running: texts.length,
          restarts: slots.reduce((n, s) => n + s.restarts, 0),
        })
      );
    },
    async ready() {
      return (await scrapeAll()).every((r) => r?.ready === true);
    },
    async status() {
      const replies = await scrapeAll();
      return {
        ready: replies.every((r) => r?.ready === true),
        supervisor: { pid: process.pid },
        workers: slots.map((slot, i) => {
          const reply = replies[i];
          return {
            worker: slot.index,
            pid: slot.worker?.isDead() === false ? slot.worker.process.pid : null,
            up: reply !== undefined,
            restarts: slot.restarts,
            queries: reply ? familyTotal(reply.metrics, "doh_relay_queries_total") : null,
            ...(reply ? { status: reply.status } : {}),
          };
        }),
      };
    },
  };
}

interface Shutdown {
  readonly stopping: boolean;
  /** Resolves to the exit code once every worker has exited after a stop. */
  readonly finished: Promise<number>;
  /** Drains the workers (SIGTERM, then SIGKILL past the drain time); the first call counts. */
  stop(reason: string, code?: number): void;
  /** While stopping: a worker exited with `code`. */
  exited(worker: Worker, code: number | null): void;
  /** The ops server to close once the workers are gone. */
  closesOnStop(ops: OpsServer): void;
}

/** The supervisor's stop: drain every worker, close the ops server, give the exit code. */
function createShutdown(slots: readonly Slot[], options: SupervisorOptions): Shutdown {
  const { logger, drainMs, count } = options;
  const { promise: finished, resolve: finish } = Promise.withResolvers<number>();
  let stopping = false;
  let exitCode = 0;
  /** Workers serving when the stop began: each must drain and exit 0. */
  const draining = new Set<Worker>();
  let ops: OpsServer | undefined;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const checkStopped = () => {
    if (!stopping || live(slots).length > 0) return;
    clearTimeout(killTimer);
    void (ops ? ops.close() : Promise.resolve()).then(() => {
      logger.info("stopped", { workers: count });
      finish(exitCode);
    });
  };
  return {
    get stopping() {
      return stopping;
    },
    finished,
    stop(reason, code = 0) {
      if (stopping) return;
      stopping = true;
      exitCode = code;
      logger.info("shutting down", {
        signal: reason,
        workers: live(slots).map((w) => w.process.pid),
      });
      for (const slot of slots) {
        clearTimeout(slot.timer);
        if (slot.ready && slot.worker) draining.add(slot.worker);
      }
      // A worker still starting has nothing in flight: SIGTERM ends it at once.
      for (const worker of live(slots)) worker.process.kill("SIGTERM");
      killTimer = setTimeout(() => {
        for (const worker of live(slots)) {
          logger.error("worker did not stop in time; killing it", { pid: worker.process.pid });
          worker.process.kill("SIGKILL");
        }
      }, drainMs + 2000);
      checkStopped();
    },
    exited(worker, code) {
      if (draining.has(worker) && code !== 0) exitCode = 1;
      checkStopped();
    },
    closesOnStop(server) {
      ops = server;
    },
  };
}

/** Forks each slot's worker and restarts one that exits, as the slot's restart policy allows. */
function createForker(
  slots: readonly Slot[],
  logger: Logger,
  scraper: Scraper,
  shutdown: Shutdown,
): { startAll(): Promise<boolean> } {
  let started = false;
  const { promise: allReady, resolve: startupDone } = Promise.withResolvers<boolean>();

  const fork = (slot: Slot) => {
    slot.timer = undefined;
    const worker = cluster.fork({ [WORKER_ENV]: String(slot.index) });
    slot.worker = worker;
    slot.startedAt = Date.now();
    slot.ready = false;
    worker.on("message", (message: WorkerMessage) => {
      if (message?.type === "doh-relay:ready") {
        slot.ready = true;
        if (started)
          logger.info("worker restarted", { worker: slot.index, pid: worker.process.pid });
        else if (slots.every((s) => s.ready)) startupDone(true);
      } else if (message?.type === "doh-relay:scrape") {
        scraper.deliver(message);
      }
    });
    worker.on("exit", (code, signal) => onExit(slot, worker, code, signal));
  };

  const onExit = (slot: Slot, worker: Worker, code: number | null, signal: string | null) => {
    if (slot.worker !== worker) return;
    slot.ready = false;
    const fields = { worker: slot.index, pid: worker.process.pid, code, signal };
    if (shutdown.stopping) return shutdown.exited(worker, code);
    if (!started) {
      logger.error("worker failed to start", fields);
      startupDone(false);
      return;
    }
    const next = slot.policy.exited(slot.startedAt);
    if (!next) {
      logger.error("worker keeps failing; stopping (control.max_consecutive_failure)", fields);
      shutdown.stop("worker failures", 1);
      return;
    }
    slot.restarts++;
    logger.warn("worker exited; restarting", {
      ...fields,
      restart_in_ms: next.delay,
      failures_in_a_row: next.failures,
    });
    slot.timer = setTimeout(() => fork(slot), next.delay);
  };

  return {
    /** Forks every slot; true once all are serving, false when one fails to start. */
    async startAll() {
      for (const slot of slots) fork(slot);
      started = await allReady;
      return started;
    },
  };
}

/** SIGTERM and SIGINT stop the workers; SIGHUP passes on to the ones serving. */
function forwardSignals(slots: readonly Slot[], shutdown: Shutdown, logger: Logger): void {
  process.on("SIGTERM", () => shutdown.stop("SIGTERM"));
  process.on("SIGINT", () => shutdown.stop("SIGINT"));
  process.on("SIGHUP", () => {
    if (shutdown.stopping) return;
    // A worker still starting reads the file itself (and has no SIGHUP handler yet).
    const workers = slots.flatMap((s) => (s.ready && s.worker ? [s.worker] : []));
    logger.info("reload: passing SIGHUP to the workers", {
      workers: workers.map((w) => w.process.pid),
    });
    for (const worker of workers) worker.process.kill("SIGHUP");
  });
}

/** In a worker: tells the supervisor it is serving and answers its scrapes. */
export function reportToSupervisor(source: OpsSource): void {
  process.on("message", (message: ScrapeRequest) => {
    if (message?.type !== "doh-relay:scrape") return;
    void Promise.all([source.metrics(), source.ready(), source.status()]).then(
      ([metrics, ready, status]) => {
        const reply: WorkerMessage = {
          type: "doh-relay:scrape",
          id: message.id,
          metrics,
          ready,
          status,
        };
        process.send?.(reply);
      },
    );
  });
  const ready: WorkerMessage = { type: "doh-relay:ready" };
  process.send?.(ready);
}
