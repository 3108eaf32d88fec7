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
  const { config, count, logger, drainMs, ownSockets } = options;
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
  let stopping = false;
  let started = false;
  let nextId = 1;
  const waiting = new Map<number, (reply: ScrapeReply) => void>();
  const { promise: finished, resolve: finish } = Promise.withResolvers<number>();
  const { promise: allReady, resolve: startupDone } = Promise.withResolvers<boolean>();

  const live = () => slots.flatMap((s) => (s.worker && !s.worker.isDead() ? [s.worker] : []));

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
        waiting.get(message.id)?.(message);
      }
    });
    worker.on("exit", (code, signal) => onExit(slot, worker, code, signal));
  };

  const onExit = (slot: Slot, worker: Worker, code: number | null, signal: string | null) => {
    if (slot.worker !== worker) return;
    slot.ready = false;
    const fields = { worker: slot.index, pid: worker.process.pid, code, signal };
    if (stopping) {
      if (draining.has(worker) && code !== 0) exitCode = 1;
      return checkStopped();
    }
    if (!started) {
      logger.error("worker failed to start", fields);
      startupDone(false);
      return;
    }
    const next = slot.policy.exited(slot.startedAt);
    if (!next) {
      logger.error("worker keeps failing; stopping (control.max_consecutive_failure)", fields);
      stop("worker failures", 1);
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

  let exitCode = 0;
  /** Workers serving when the stop began: each must drain and exit 0. */
  const draining = new Set<Worker>();
  let ops: OpsServer | undefined;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const checkStopped = () => {
    if (!stopping || live().length > 0) return;
    clearTimeout(killTimer);
    void (ops ? ops.close() : Promise.resolve()).then(() => {
      logger.info("stopped", { workers: count });
      finish(exitCode);
    });
  };
  const stop = (reason: string, code = 0) => {
    if (stopping) return;
    stopping = true;
    exitCode = code;
    logger.info("shutting down", { signal: reason, workers: live().map((w) => w.process.pid) });
    for (const slot of slots) {
      clearTimeout(slot.timer);
      if (slot.ready && slot.worker) draining.add(slot.worker);
    }
    // A worker still starting has nothing in flight: SIGTERM ends it at once.
    for (const worker of live()) worker.process.kill("SIGTERM");
    killTimer = setTimeout(() => {
      for (const worker of live()) {
        logger.error("worker did not stop in time; killing it", { pid: worker.process.pid });
        worker.process.kill("SIGKILL");
      }
    }, drainMs + 2000);
    checkStopped();
  };

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
  const scrapeAll = () => Promise.all(slots.map(scrape));

  const source: OpsSource = {
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

  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGHUP", () => {
    if (stopping) return;
    // A worker still starting reads the file itself (and has no SIGHUP handler yet).
    const workers = slots.flatMap((s) => (s.ready && s.worker ? [s.worker] : []));
    logger.info("reload: passing SIGHUP to the workers", {
      workers: workers.map((w) => w.process.pid),
    });
    for (const worker of workers) worker.process.kill("SIGHUP");
  });

  for (const slot of slots) fork(slot);
  if (!(await allReady)) {
    stop("startup failed", 1);
    return finished;
  }
  started = true;
  if (config.listen.metrics) {
    try {
      ops = await startOpsServer(config.listen.metrics.addr, source);
      logger.info("listening", {
        listener: "metrics",
        address: formatHostPort({ ...config.listen.metrics.addr, port: ops.port }),
      });
    } catch (error) {
      logger.error("startup failed", { error });
      stop("startup failed", 1);
      return finished;
    }
  }
  logger.info("workers started", {
    workers: slots.map((s) => ({ worker: s.index, pid: s.worker?.process.pid })),
    sockets: ownSockets ? "one per worker (SO_REUSEPORT)" : "shared",
  });
  return finished;
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
