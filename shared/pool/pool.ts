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
// - A query whose connection died under it (`read` or `send`), or that the
//   driver calls retryable, is retried on a fresh one, up to `maxRetries`
//   times (DNS queries are idempotent).
// - A connection going away (HTTP/3 GOAWAY) takes no new queries; it still
//   counts until its last query settles, then it is closed.
// Time comes from the injected clock only, so tests run it by hand.

import { type Clock, systemClock, type TimerHandle } from "../engine/clock.ts";
import { abortedBy, toUpstreamError, UpstreamError } from "../engine/errors.ts";
import { type PoolStats, type Upstream, unsendable } from "../engine/upstream.ts";
import { type Backoff, createBackoff } from "./backoff.ts";
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
  return new ConnectionPool(driver, options);
}

class ConnectionPool implements Pool {
  readonly name: string;
  private readonly driver: PoolDriver;
  private readonly options: PoolOptions;
  private readonly clock: Clock;
  private readonly backoff: Backoff;
  private readonly entries: Entry[] = [];
  /** Out of the pool but finishing their queries (goingAway), until lost or idle. */
  private readonly retiring = new Set<Entry>();
  private readonly waiters: Waiter[] = [];
  /** Wake-ups of retries waiting out the backoff, so close() can end them. */
  private readonly sleepers = new Set<() => void>();
  private readonly shutdown = new AbortController();
  private readonly stats = { opened: 0, resumed: 0, reconnects: 0, reused: 0, fresh: 0 };
  /** Connections gone and not yet replaced: the next opens count as reconnects. */
  private lost = 0;
  private closed = false;

  constructor(driver: PoolDriver, options: PoolOptions) {
    this.name = options.name;
    this.driver = driver;
    this.options = options;
    this.clock = options.clock ?? systemClock;
    this.backoff = createBackoff({ clock: this.clock, maxMs: options.maxBackoffMs ?? 5000 });
  }

  query(message: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new UpstreamError("closed", this.name));
    if (signal.aborted) return Promise.reject(abortedBy(signal, this.name));
    const bad = unsendable(message, this.name);
    if (bad) return Promise.reject(bad);
    const wire = this.driver.prepare ? this.driver.prepare(message) : message;
    let first: Entry | undefined;
    try {
      first = this.leaseNow(signal);
    } catch {
      // In reconnect backoff: run() meets the same state and reports it.
    }
    // A free place on an open connection: one promise step, no async frames (the common case).
    if (first?.conn) return this.exchangeOn(first, first.conn, wire, message, signal);
    return this.run(wire, message, signal, first, 0);
  }

  poolStats(): PoolStats {
    let inFlight = 0;
    for (const e of this.entries) inFlight += e.load;
    for (const e of this.retiring) inFlight += e.load;
    return { open: this.entries.length + this.retiring.size, inFlight, ...this.stats };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.shutdown.abort(new UpstreamError("closed", this.name));
    for (const waiter of this.waiters.splice(0)) {
      waiter.signal.removeEventListener("abort", waiter.onAbort);
      waiter.reject(new UpstreamError("closed", this.name));
    }
    for (const entry of [...this.entries]) {
      this.remove(entry);
      entry.conn?.close(false);
    }
    for (const entry of this.retiring) entry.conn?.close(false);
    this.retiring.clear();
    for (const wake of [...this.sleepers]) wake();
  }

  /**
   * Leases a place (`first` if one is taken already), exchanges, and retries
   * as the pool's rules allow; `retries` made so far.
   */
  private async run(
    wire: Uint8Array,
    message: Uint8Array,
    signal: AbortSignal,
    first: Entry | undefined,
    retries: number,
  ): Promise<Uint8Array> {
    for (let entry = first; ; entry = undefined) {
      try {
        entry = entry ?? this.leaseNow(signal) ?? (await this.lease(signal));
        return await this.attempt(entry, wire, message, signal);
      } catch (raw) {
        if (this.afterFailure(raw, entry, signal, retries) === "backoff") {
          await this.backoffOver(signal);
        } else retries++;
      }
    }
  }

  /**
   * What follows a failed try: wait out the reconnect backoff, or retry on
   * a fresh connection; throws the error for the caller when neither applies.
   */
  private afterFailure(
    raw: unknown,
    entry: Entry | undefined,
    signal: AbortSignal,
    retries: number,
  ): "backoff" | "retry" {
    if (signal.aborted) throw abortedBy(signal, this.name);
    if (this.closed) throw new UpstreamError("closed", this.name);
    const error = toUpstreamError(raw, this.name);
    const opened = entry?.conn !== undefined;
    if (!opened && error.code === "connect" && retries > 0) return "backoff";
    const died = opened && !entry?.live && RETRY_AFTER_DEATH.has(error.code);
    const again = died || (opened && this.driver.retryable?.(error) === true);
    if (!again || retries >= this.options.maxRetries) throw error;
    return "retry";
  }

  /** The answer from one connection; the connection's place is given back either way. */
  private async attempt(entry: Entry, wire: Uint8Array, message: Uint8Array, signal: AbortSignal) {
    try {
      // An open connection is used as it is; one still opening is awaited.
      const conn = entry.conn ?? (await this.whenReady(entry.ready, signal));
      // The signal may have aborted while the connection opened (no event fires for that).
      if (signal.aborted) throw abortedBy(signal, this.name);
      this.countSent(entry);
      return await conn.exchange(wire, message, signal);
    } finally {
      this.release(entry);
    }
  }

  /** attempt() on an open connection, as one promise step; a failure goes on to run()'s retries. */
  private exchangeOn(
    entry: Entry,
    conn: PoolConnection,
    wire: Uint8Array,
    message: Uint8Array,
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    this.countSent(entry);
    let answer: Promise<Uint8Array>;
    try {
      answer = conn.exchange(wire, message, signal);
    } catch (error) {
      answer = Promise.reject(error);
    }
    return answer.then(
      (bytes) => {
        this.release(entry);
        return bytes;
      },
      (raw: unknown) => {
        this.release(entry);
        // No retry made yet, so never "backoff": a retry, or the error thrown.
        this.afterFailure(raw, entry, signal, 0);
        return this.run(wire, message, signal, undefined, 1);
      },
    );
  }

  private countSent(entry: Entry) {
    if (entry.sent++ > 0) this.stats.reused++;
    else this.stats.fresh++;
  }

  private whenReady(ready: Promise<PoolConnection>, signal: AbortSignal) {
    // One caller giving up must not cancel the open the others wait for.
    return new Promise<PoolConnection>((resolve, reject) => {
      const onAbort = () => reject(abortedBy(signal, this.name));
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      ready.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
  }

  /** A place on a connection free right now, if no one waits ahead; throws in reconnect backoff. */
  private leaseNow(signal: AbortSignal): Entry | undefined {
    if (this.closed || signal.aborted || this.waiters.length > 0) return undefined;
    const entry = this.pick();
    return entry ? this.take(entry) : undefined;
  }

  /** A place on a connection (maybe one still opening), now or once one frees up. */
  private lease(signal: AbortSignal): Promise<Entry> {
    if (this.closed) return Promise.reject(new UpstreamError("closed", this.name));
    if (signal.aborted) return Promise.reject(abortedBy(signal, this.name));
    if (this.waiters.length === 0) {
      let entry: Entry | undefined;
      try {
        entry = this.pick();
      } catch (error) {
        return Promise.reject(error);
      }
      if (entry) return Promise.resolve(this.take(entry));
      if (this.options.whenFull === "busy") {
        const busy = new UpstreamError("busy", this.name, `${this.name}: every connection full`);
        return Promise.reject(busy);
      }
    }
    return new Promise<Entry>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          reject(abortedBy(signal, this.name));
        },
      };
      signal.addEventListener("abort", waiter.onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** The least loaded connection with room, a new one, or undefined when all are full. */
  private pick(): Entry | undefined {
    let best: Entry | undefined;
    for (const e of this.entries) if (!best || e.load < best.load) best = e;
    if (best && best.load === 0) return best;
    if (this.entries.length < this.options.size) {
      if (!this.backoff.holding()) return this.open();
      if (!best) throw new UpstreamError("connect", this.name, `${this.name}: reconnect backoff`);
    }
    return best && best.load < this.options.maxInFlight ? best : undefined;
  }

  private open(): Entry {
    this.stats.opened++;
    if (this.lost > 0) {
      this.lost--;
      this.stats.reconnects++;
    }
    const entry: Entry = {
      ready: Promise.resolve() as unknown as Promise<PoolConnection>,
      conn: undefined,
      load: 0,
      sent: 0,
      live: true,
      idleTimer: undefined,
    };
    const context = {
      signal: this.shutdown.signal,
      lost: () => {
        this.retiring.delete(entry);
        this.remove(entry);
      },
      goingAway: () => {
        if (!entry.live) return;
        this.remove(entry);
        if (entry.load > 0) this.retiring.add(entry);
        else entry.conn?.close(true);
      },
    };
    entry.ready = this.driver.open(context).then(
      (conn) => {
        if (!entry.live) {
          conn.close(false);
          throw new UpstreamError(this.closed ? "closed" : "connect", this.name);
        }
        entry.conn = conn;
        this.backoff.succeeded();
        if (conn.resumed) this.stats.resumed++;
        // Everyone who waited for it may have given up meanwhile.
        if (entry.load === 0) this.armIdle(entry, conn);
        return conn;
      },
      (error: unknown) => {
        this.backoff.failed();
        this.remove(entry);
        throw toUpstreamError(error, this.name);
      },
    );
    entry.ready.catch(() => {}); // each query waiting on it sees the rejection
    this.entries.push(entry);
    return entry;
  }

  private take(entry: Entry): Entry {
    entry.load++;
    if (entry.idleTimer !== undefined) this.clock.clearTimeout(entry.idleTimer);
    entry.idleTimer = undefined;
    return entry;
  }

  private release(entry: Entry) {
    entry.load--;
    if (entry.load === 0 && entry.live && entry.conn) this.armIdle(entry, entry.conn);
    if (entry.load === 0 && this.retiring.delete(entry)) entry.conn?.close(true);
    this.pump();
  }

  /** Closes the connection once it has carried nothing for idleTimeoutMs. */
  private armIdle(entry: Entry, conn: PoolConnection) {
    if (entry.idleTimer !== undefined) this.clock.clearTimeout(entry.idleTimer);
    entry.idleTimer = this.clock.setTimeout(() => {
      entry.idleTimer = undefined;
      if (entry.load > 0) return;
      this.remove(entry);
      conn.close(true);
    }, this.options.idleTimeoutMs);
  }

  /** Takes a connection out of the pool (it is closed by whoever decided it is gone). */
  private remove(entry: Entry) {
    if (!entry.live) return;
    entry.live = false;
    if (entry.idleTimer !== undefined) this.clock.clearTimeout(entry.idleTimer);
    this.entries.splice(this.entries.indexOf(entry), 1);
    this.lost++;
    this.pump();
  }

  /** Hands waiting queries to connections with room, first come first served. */
  private pump() {
    while (this.waiters.length > 0 && !this.closed) {
      let entry: Entry | undefined;
      let failure: UpstreamError | undefined;
      try {
        entry = this.pick();
        if (!entry) return;
      } catch (error) {
        failure = error as UpstreamError;
      }
      const waiter = this.waiters.shift() as Waiter;
      waiter.signal.removeEventListener("abort", waiter.onAbort);
      if (entry) waiter.resolve(this.take(entry));
      else waiter.reject(failure as UpstreamError);
    }
  }

  /** Resolves when the backoff is over (at least 10 ms on), or rejects once the caller gives up. */
  private backoffOver(signal: AbortSignal): Promise<void> {
    const { clock } = this;
    return new Promise<void>((resolve, reject) => {
      const done = (error?: UpstreamError) => {
        clock.clearTimeout(timer);
        this.sleepers.delete(wake);
        signal.removeEventListener("abort", onAbort);
        if (error) reject(error);
        else resolve();
      };
      const wake = () => done(this.closed ? new UpstreamError("closed", this.name) : undefined);
      const onAbort = () => done(abortedBy(signal, this.name));
      const timer = clock.setTimeout(wake, Math.max(this.backoff.readyAt() - clock.now(), 10));
      this.sleepers.add(wake);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }
}
