// The pool core: connections to one upstream opened through a driver
// (driver.ts), shared by queries. Every protocol's pool is this plus its
// driver, the way undici's Pool is Clients behind one Dispatcher.
//
// - Up to `size` connections, each carrying up to `maxInFlight` queries; a
//   query takes the least loaded one, opening a new one while under `size`.
//   When all are full it waits its turn (`whenFull: "wait"`) or fails `busy`.
// - A failed open starts a reconnect backoff (backoff.ts); a query finding no
//   live connection meanwhile fails at once with `connect`, so the route can
//   try elsewhere. A retry (below) waits the backoff out while its deadline
//   allows: a server restart costs latency, not answers.
// - A connection with nothing in flight for `idleTimeoutMs` is closed.
// - A query whose connection died under it (`read` or `send`) is retried on
//   a fresh one, up to `maxRetries` times (DNS queries are idempotent).
// Time comes from the injected clock only, so tests run it by hand.

import { type Clock, systemClock, type TimerHandle } from "../engine/clock.ts";
import { abortedBy, toUpstreamError, UpstreamError } from "../engine/errors.ts";
import { type PoolStats, type Upstream, unsendable } from "../engine/upstream.ts";
import { createBackoff } from "./backoff.ts";
import type { PoolConnection, PoolDriver } from "./driver.ts";

export interface PoolOptions {
  name: string;
  /** Connections kept open at most. */
  size: number;
  /** Queries in flight per connection. */
  maxInFlight: number;
  /** With every connection full: queue the query (default) or refuse it as `busy`. */
  whenFull?: "wait" | "busy";
  /** A connection with nothing in flight for this long is closed, ms. */
  idleTimeoutMs: number;
  /** Retries on a fresh connection for a query whose connection died. */
  maxRetries: number;
  /** Cap of the reconnect backoff, ms (default 5000). */
  maxBackoffMs?: number;
  clock?: Clock;
}

/** An Upstream that always reports its connections. */
export interface Pool extends Upstream {
  poolStats(): PoolStats;
}

interface Entry {
  ready: Promise<PoolConnection>;
  conn: PoolConnection | undefined;
  /** Queries holding a place on it (waiting for the open, or exchanging). */
  load: number;
  /** Queries sent on it so far. */
  sent: number;
  /** False once out of the pool: takes no new queries. */
  live: boolean;
  idleTimer: TimerHandle | undefined;
}

interface Waiter {
  resolve(entry: Entry): void;
  reject(error: UpstreamError): void;
  signal: AbortSignal;
  onAbort(): void;
}

const RETRY_AFTER_DEATH = new Set(["read", "send"]);

export function createPool(driver: PoolDriver, options: PoolOptions): Pool {
  const { name, size, maxInFlight } = options;
  const clock = options.clock ?? systemClock;
  const backoff = createBackoff({ clock, maxMs: options.maxBackoffMs ?? 5000 });
  const entries: Entry[] = [];
  const waiters: Waiter[] = [];
  /** Wake-ups of retries waiting out the backoff, so close() can end them. */
  const sleepers = new Set<() => void>();
  const shutdown = new AbortController();
  const stats = { opened: 0, resumed: 0, reconnects: 0, reused: 0, fresh: 0 };
  /** Connections gone and not yet replaced: the next opens count as reconnects. */
  let lost = 0;
  let closed = false;

  /** Takes a connection out of the pool (it is closed by whoever decided it is gone). */
  function remove(entry: Entry) {
    if (!entry.live) return;
    entry.live = false;
    if (entry.idleTimer !== undefined) clock.clearTimeout(entry.idleTimer);
    entries.splice(entries.indexOf(entry), 1);
    lost++;
    pump();
  }

  function open(): Entry {
    stats.opened++;
    if (lost > 0) {
      lost--;
      stats.reconnects++;
    }
    const entry: Entry = {
      ready: Promise.resolve() as unknown as Promise<PoolConnection>,
      conn: undefined,
      load: 0,
      sent: 0,
      live: true,
      idleTimer: undefined,
    };
    entry.ready = driver.open({ signal: shutdown.signal, lost: () => remove(entry) }).then(
      (conn) => {
        if (!entry.live) {
          conn.close(false);
          throw new UpstreamError(closed ? "closed" : "connect", name);
        }
        entry.conn = conn;
        backoff.succeeded();
        if (conn.resumed) stats.resumed++;
        return conn;
      },
      (error: unknown) => {
        backoff.failed();
        remove(entry);
        throw toUpstreamError(error, name);
      },
    );
    entry.ready.catch(() => {}); // each query waiting on it sees the rejection
    entries.push(entry);
    return entry;
  }

  /** The least loaded connection with room, a new one, or undefined when all are full. */
  function pick(): Entry | undefined {
    let best: Entry | undefined;
    for (const e of entries) if (!best || e.load < best.load) best = e;
    if (best && best.load === 0) return best;
    if (entries.length < size) {
      if (!backoff.holding()) return open();
      if (!best) throw new UpstreamError("connect", name, `${name}: reconnect backoff`);
    }
    return best && best.load < maxInFlight ? best : undefined;
  }

  function take(entry: Entry): Entry {
    entry.load++;
    if (entry.idleTimer !== undefined) clock.clearTimeout(entry.idleTimer);
    entry.idleTimer = undefined;
    return entry;
  }

  function release(entry: Entry) {
    entry.load--;
    if (entry.load === 0 && entry.live && entry.conn) {
      const conn = entry.conn;
      entry.idleTimer = clock.setTimeout(() => {
        entry.idleTimer = undefined;
        if (entry.load > 0) return;
        remove(entry);
        conn.close(true);
      }, options.idleTimeoutMs);
    }
    pump();
  }

  /** Hands waiting queries to connections with room, first come first served. */
  function pump() {
    while (waiters.length > 0 && !closed) {
      let entry: Entry | undefined;
      try {
        entry = pick();
      } catch (error) {
        const waiter = waiters.shift() as Waiter;
        waiter.signal.removeEventListener("abort", waiter.onAbort);
        waiter.reject(error as UpstreamError);
        continue;
      }
      if (!entry) return;
      const waiter = waiters.shift() as Waiter;
      waiter.signal.removeEventListener("abort", waiter.onAbort);
      waiter.resolve(take(entry));
    }
  }

  /** A place on a connection (maybe one still opening). */
  function lease(signal: AbortSignal): Promise<Entry> {
    if (closed) return Promise.reject(new UpstreamError("closed", name));
    if (signal.aborted) return Promise.reject(abortedBy(signal, name));
    if (waiters.length === 0) {
      let entry: Entry | undefined;
      try {
        entry = pick();
      } catch (error) {
        return Promise.reject(error);
      }
      if (entry) return Promise.resolve(take(entry));
      if (options.whenFull === "busy") {
        return Promise.reject(new UpstreamError("busy", name, `${name}: every connection full`));
      }
    }
    return new Promise<Entry>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(abortedBy(signal, name));
        },
      };
      signal.addEventListener("abort", waiter.onAbort, { once: true });
      waiters.push(waiter);
    });
  }

  /** Resolves when the backoff is over (at least 10 ms on), or rejects once the caller gives up. */
  function backoffOver(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = (error?: UpstreamError) => {
        clock.clearTimeout(timer);
        sleepers.delete(wake);
        signal.removeEventListener("abort", onAbort);
        if (error) reject(error);
        else resolve();
      };
      const wake = () => done(closed ? new UpstreamError("closed", name) : undefined);
      const onAbort = () => done(abortedBy(signal, name));
      const timer = clock.setTimeout(wake, Math.max(backoff.readyAt() - clock.now(), 10));
      sleepers.add(wake);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** The answer from one connection, or an error saying whether to try another. */
  async function attempt(entry: Entry, wire: Uint8Array, message: Uint8Array, signal: AbortSignal) {
    try {
      const conn = await whenReady(entry.ready, signal);
      // The signal may have aborted while the connection opened (no event fires for that).
      if (signal.aborted) throw abortedBy(signal, name);
      if (entry.sent++ > 0) stats.reused++;
      else stats.fresh++;
      return await conn.exchange(wire, message, signal);
    } finally {
      release(entry);
    }
  }

  function whenReady(ready: Promise<PoolConnection>, signal: AbortSignal) {
    // One caller giving up must not cancel the open the others wait for.
    return new Promise<PoolConnection>((resolve, reject) => {
      const onAbort = () => reject(abortedBy(signal, name));
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      ready.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
  }

  async function run(message: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    const wire = driver.prepare ? driver.prepare(message) : message;
    for (let retries = 0; ; ) {
      let entry: Entry | undefined;
      try {
        entry = await lease(signal);
        return await attempt(entry, wire, message, signal);
      } catch (raw) {
        if (signal.aborted) throw abortedBy(signal, name);
        if (closed) throw new UpstreamError("closed", name);
        const error = toUpstreamError(raw, name);
        const opened = entry?.conn !== undefined;
        if (!opened && error.code === "connect" && retries > 0) {
          await backoffOver(signal);
          continue;
        }
        const died = opened && !entry?.live && RETRY_AFTER_DEATH.has(error.code);
        if (!died || retries >= options.maxRetries) throw error;
        retries++;
      }
    }
  }

  return {
    name,
    query(message, signal) {
      if (closed) return Promise.reject(new UpstreamError("closed", name));
      if (signal.aborted) return Promise.reject(abortedBy(signal, name));
      const bad = unsendable(message, name);
      if (bad) return Promise.reject(bad);
      return run(message, signal);
    },
    poolStats(): PoolStats {
      let inFlight = 0;
      for (const e of entries) inFlight += e.load;
      return { open: entries.length, inFlight, ...stats };
    },
    async close() {
      closed = true;
      shutdown.abort(new UpstreamError("closed", name));
      for (const entry of [...entries]) {
        remove(entry);
        entry.conn?.close(false);
      }
      for (const waiter of waiters.splice(0)) {
        waiter.signal.removeEventListener("abort", waiter.onAbort);
        waiter.reject(new UpstreamError("closed", name));
      }
      for (const wake of [...sleepers]) wake();
    },
  };
}
