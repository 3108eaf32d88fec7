// The pool core (shared/pool/pool.ts) on manual time, with an in-memory
// driver whose connections answer when the test says: how many connections
// it opens and which one a query takes, waiting for a slot, the reconnect
// backoff, retries after a connection dies or a retryable failure,
// connections going away (GOAWAY), idle closes, close(), and the stats it
// reports. The drivers on real servers are tested in test/relay.

import { describe, expect, it } from "vitest";
import { buildQuery } from "../../shared/dns/query.ts";
import { readId } from "../../shared/dns/wire.ts";
import { UpstreamError } from "../../shared/engine/errors.ts";
import { createManualClock, type ManualClock } from "../../shared/engine/manual-clock.ts";
import type { OpenContext, PoolConnection, PoolDriver } from "../../shared/pool/driver.ts";
import { createPool, type PoolOptions } from "../../shared/pool/pool.ts";
import { runFor, settle } from "./support/time.ts";

interface FakeConnection {
  /** Queries sent on it and not yet answered. */
  waiting: { id: number; answer(): void; fail(error: UpstreamError): void }[];
  closed: "" | "graceful" | "now";
  /** The peer drops the connection: queries on it fail with `read`. */
  die(): void;
  /** The peer goes away (a GOAWAY): no new queries, those on it may finish. */
  goAway(): void;
}

/** Connections that open when `opens` says and answer when the test calls answer(). */
function fakeDriver() {
  const connections: FakeConnection[] = [];
  /** Outcome of each next open, in order; missing entries open fine. */
  const opens: ("ok" | "refused")[] = [];
  const driver: PoolDriver = {
    // The peer refused the query unseen (an HTTP/3 REQUEST_REJECTED).
    retryable: (error) => error.message === "fake: rejected",
    async open(context: OpenContext): Promise<PoolConnection> {
      await settle();
      if (opens.shift() === "refused") throw new UpstreamError("connect", "fake", "refused");
      return fakeConnection(connections, context);
    },
  };
  return { driver, connections, opens };
}

function fakeConnection(all: FakeConnection[], context: OpenContext): PoolConnection {
  const fake: FakeConnection = {
    waiting: [],
    closed: "",
    die() {
      context.lost(new UpstreamError("read", "fake", "reset"));
      for (const w of fake.waiting.splice(0)) w.fail(new UpstreamError("read", "fake", "reset"));
    },
    goAway: () => context.goingAway(),
  };
  all.push(fake);
  return {
    resumed: all.length > 1,
    exchange(wire, _message, signal) {
      return new Promise((resolve, reject) => {
        const entry = {
          id: readId(wire),
          answer: () => resolve(Uint8Array.from(wire)),
          fail: reject,
        };
        fake.waiting.push(entry);
        signal.addEventListener("abort", () => {
          fake.waiting.splice(fake.waiting.indexOf(entry), 1);
          reject(new UpstreamError("aborted", "fake"));
        });
      });
    },
    close(graceful) {
      if (!fake.closed) context.lost(new UpstreamError("closed", "fake"));
      fake.closed ||= graceful ? "graceful" : "now";
      for (const w of fake.waiting.splice(0)) w.fail(new UpstreamError("closed", "fake"));
    },
  };
}

const defaults: Omit<PoolOptions, "clock"> = {
  name: "fake",
  size: 2,
  maxInFlight: 2,
  idleTimeoutMs: 1000,
  maxRetries: 1,
};

function setup(overrides: Partial<PoolOptions> = {}) {
  const clock: ManualClock = createManualClock();
  const fake = fakeDriver();
  const pool = createPool(fake.driver, { ...defaults, clock, ...overrides });
  const ask = (id: number, signal = new AbortController().signal) =>
    pool.query(buildQuery("pool.test", 1, { id }), signal);
  /** Answers every query waiting on every connection. */
  const answerAll = () => {
    for (const c of fake.connections) for (const w of c.waiting.splice(0)) w.answer();
  };
  return { clock, pool, ask, answerAll, ...fake };
}

/** Lets `n` macrotask turns pass (the fake driver opens after one). */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await settle();
}

const outcome = (promise: Promise<Uint8Array>) =>
  promise.then(readId, (e: UpstreamError) => `error:${e.code}`);

describe("pool core", () => {
  it("fills the least loaded connection, opens up to size, and counts fresh and reused", async () => {
    const { pool, ask, connections, answerAll } = setup();
    const first = [ask(1), ask(2), ask(3)];
    await settle();
    // Three queries: the first two each find an empty connection, the third shares one.
    expect(connections.map((c) => c.waiting.length)).toEqual([2, 1]);
    answerAll();
    expect(await Promise.all(first.map(outcome))).toEqual([1, 2, 3]);
    const fourth = outcome(ask(4));
    await settle();
    expect(pool.poolStats()).toMatchObject({ open: 2, opened: 2, fresh: 2, inFlight: 1 });
    answerAll();
    expect(await fourth).toBe(4);
    expect(pool.poolStats()).toMatchObject({ fresh: 2, reused: 2, inFlight: 0 });
    await pool.close();
  });

  it("queues queries past size × maxInFlight in order, and an aborted one leaves the queue", async () => {
    const { pool, ask, connections, answerAll } = setup({ size: 1, maxInFlight: 1 });
    const quitter = new AbortController();
    const results = [ask(1), ask(2, quitter.signal), ask(3)].map(outcome);
    await settle();
    expect(connections[0]?.waiting.map((w) => w.id)).toEqual([1]);
    quitter.abort();
    answerAll();
    await settle();
    expect(connections[0]?.waiting.map((w) => w.id)).toEqual([3]);
    answerAll();
    expect(await Promise.all(results)).toEqual([1, "error:aborted", 3]);
    expect(pool.poolStats()).toMatchObject({ opened: 1, fresh: 1, reused: 1, inFlight: 0 });
    await pool.close();
  });

  it("refuses a query past the limit as busy when told to", async () => {
    const { pool, ask, answerAll } = setup({ size: 1, maxInFlight: 2, whenFull: "busy" });
    const held = [ask(1), ask(2)].map(outcome);
    expect(await outcome(ask(3))).toBe("error:busy");
    await settle();
    answerAll();
    expect(await Promise.all(held)).toEqual([1, 2]);
    await pool.close();
  });

  it("backs off after a failed open: fails fast inside it, opens again after it, doubling", async () => {
    const { pool, ask, opens, clock, answerAll } = setup();
    opens.push("refused", "refused");
    expect(await outcome(ask(1))).toBe("error:connect");
    await expect(ask(2)).rejects.toThrow(/reconnect backoff/);
    await runFor(clock, 100); // 50 × 2^1
    expect(await outcome(ask(3))).toBe("error:connect");
    await runFor(clock, 199);
    await expect(ask(4)).rejects.toThrow(/reconnect backoff/);
    await runFor(clock, 1);
    const answered = outcome(ask(5));
    await settle();
    answerAll();
    expect(await answered).toBe(5);
    expect(pool.poolStats()).toMatchObject({ opened: 3, reconnects: 2, open: 1 });
    await pool.close();
  });

  it("retries the queries of a connection that died on a fresh one, up to maxRetries", async () => {
    const { pool, ask, connections, answerAll } = setup({ size: 1, maxInFlight: 10 });
    const results = [ask(1), ask(2)].map(outcome);
    await settle();
    connections[0]?.die();
    await turns(2);
    expect(connections).toHaveLength(2);
    // The retry's connection dies too: maxRetries (1) is spent, the error is the caller's.
    connections[1]?.die();
    expect(await Promise.all(results)).toEqual(["error:read", "error:read"]);
    const again = outcome(ask(3));
    await settle();
    answerAll();
    expect(await again).toBe(3);
    expect(pool.poolStats()).toMatchObject({ opened: 3, reconnects: 2, resumed: 2 });
    await pool.close();
  });

  it("on an open connection (no async step): retries after a death, gives the place back on abort", async () => {
    const { pool, ask, connections, answerAll } = setup({ size: 1, maxInFlight: 10 });
    const first = outcome(ask(1));
    await settle();
    answerAll();
    expect(await first).toBe(1);
    // The connection is open: these take a place on it at once.
    const dies = outcome(ask(2));
    const gone = new AbortController();
    const aborted = outcome(ask(3, gone.signal));
    expect(connections[0]?.waiting.map((w) => w.id)).toEqual([2, 3]);
    gone.abort();
    expect(await aborted).toBe("error:aborted");
    expect(pool.poolStats().inFlight).toBe(1);
    connections[0]?.die();
    await turns(2);
    expect(connections[1]?.waiting.map((w) => w.id)).toEqual([2]); // the retry, on a fresh one
    answerAll();
    expect(await dies).toBe(2);
    expect(pool.poolStats()).toMatchObject({ inFlight: 0, opened: 2, reconnects: 1 });
    await pool.close();
  });

  it("retries a query the driver calls retryable, on a live connection, up to maxRetries", async () => {
    const { pool, ask, connections, answerAll } = setup({ size: 1, maxInFlight: 10 });
    const rejected = () => new UpstreamError("read", "fake", "fake: rejected");
    const result = outcome(ask(1));
    await settle();
    connections[0]?.waiting.shift()?.fail(rejected());
    await turns(2);
    expect(connections[0]?.waiting).toHaveLength(1); // sent again, on the same connection
    connections[0]?.waiting.shift()?.fail(rejected());
    expect(await result).toBe("error:read");
    const again = outcome(ask(2));
    await settle();
    answerAll();
    expect(await again).toBe(2);
    expect(pool.poolStats()).toMatchObject({ open: 1, opened: 1, fresh: 1, reused: 2 });
    await pool.close();
  });

  it("takes a connection going away out of use, counting it until its last query settles", async () => {
    const { pool, ask, connections, answerAll } = setup({ size: 1, maxInFlight: 10 });
    const accepted = outcome(ask(1));
    await settle();
    connections[0]?.goAway();
    const next = outcome(ask(2));
    await turns(2);
    // The new query went to a new connection; the old one still carries its own.
    expect(connections.map((c) => c.waiting.length)).toEqual([1, 1]);
    expect(pool.poolStats()).toMatchObject({ open: 2, inFlight: 2, opened: 2, reconnects: 1 });
    connections[0]?.waiting.shift()?.answer();
    expect(await accepted).toBe(1);
    expect(connections[0]?.closed).toBe("graceful");
    expect(pool.poolStats()).toMatchObject({ open: 1, inFlight: 1 });
    // Going away with nothing on it: closed at once.
    connections[1]?.waiting.shift()?.answer();
    expect(await next).toBe(2);
    connections[1]?.goAway();
    expect(connections[1]?.closed).toBe("graceful");
    expect(pool.poolStats()).toMatchObject({ open: 0, inFlight: 0 });
    // One going away when the pool closes is closed with it.
    const last = outcome(ask(3));
    await turns(2);
    connections[2]?.goAway();
    await pool.close();
    expect(await last).toBe("error:closed");
    expect(connections[2]?.closed).toBe("now");
    expect(pool.poolStats()).toMatchObject({ open: 0, inFlight: 0 });
    answerAll();
  });

  it("lets a retry wait out a failing reconnect while its deadline allows", async () => {
    const { pool, ask, connections, opens, clock, answerAll } = setup({ size: 1 });
    const result = outcome(ask(1));
    await settle();
    opens.push("refused", "refused");
    connections[0]?.die();
    await turns(2); // the first reopen is refused at once: 100 ms backoff
    await runFor(clock, 100); // the second, 200 ms
    expect(connections).toHaveLength(1);
    await runFor(clock, 199);
    expect(connections).toHaveLength(1);
    await runFor(clock, 1);
    expect(connections).toHaveLength(2);
    answerAll();
    expect(await result).toBe(1);
    expect(pool.poolStats()).toMatchObject({ opened: 4, reconnects: 3 });
    await pool.close();
  });

  it("closes a connection idle for idleTimeoutMs, never one with queries in flight", async () => {
    const { pool, ask, connections, clock, answerAll } = setup({ idleTimeoutMs: 1000 });
    const held = outcome(ask(1));
    await runFor(clock, 5000);
    expect(connections[0]?.closed).toBe("");
    answerAll();
    expect(await held).toBe(1);
    await runFor(clock, 999);
    expect(pool.poolStats().open).toBe(1);
    await runFor(clock, 1);
    expect(connections[0]?.closed).toBe("graceful");
    expect(pool.poolStats().open).toBe(0);
    expect(clock.pending()).toBe(0);
    await pool.close();
  });

  it("closes a connection when idle even if every query gave up while it was opening", async () => {
    const { pool, ask, connections, clock } = setup({ idleTimeoutMs: 1000 });
    const quitter = new AbortController();
    const result = outcome(ask(1, quitter.signal));
    quitter.abort();
    expect(await result).toBe("error:aborted");
    await turns(2); // the open completes with no one waiting for it
    expect(pool.poolStats()).toMatchObject({ open: 1, inFlight: 0, fresh: 0 });
    await runFor(clock, 1000);
    expect(connections[0]?.closed).toBe("graceful");
    expect(pool.poolStats().open).toBe(0);
    await pool.close();
  });

  it("on close rejects sent and queued queries with closed and closes its connections", async () => {
    const { pool, ask, connections } = setup({ size: 1, maxInFlight: 1 });
    const results = [ask(1), ask(2)].map(outcome);
    await settle();
    await pool.close();
    expect(await Promise.all(results)).toEqual(["error:closed", "error:closed"]);
    expect(connections[0]?.closed).toBe("now");
    expect(pool.poolStats()).toMatchObject({ open: 0, inFlight: 0 });
    expect(await outcome(ask(3))).toBe("error:closed");
  });

  it("on close ends a retry waiting out the backoff, leaving no timer behind", async () => {
    const { pool, ask, connections, opens, clock } = setup({ size: 1 });
    const result = outcome(ask(1));
    await settle();
    opens.push("refused");
    connections[0]?.die();
    await runFor(clock, 0);
    expect(clock.pending()).toBe(1); // the retry's wake-up after the backoff
    await pool.close();
    expect(await result).toBe("error:closed");
    expect(clock.pending()).toBe(0);
  });
});
