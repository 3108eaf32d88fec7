// The Upstream contract (shared/engine/upstream.ts) as one table of cases,
// run against every transport: call runUpstreamContract({ name, make }) from
// a test file, once per transport. Runtime-neutral (vitest and shared/
// only), so the same table runs in Node (test/relay/upstream-contract.test.ts)
// and inside workerd.
//
// The server behind `make()`'s upstream answers like
// test/support/delay-dns-server.ts: a query for "<ms>.<anything>" gets an A
// record after <ms> milliseconds, under the query's ID as received.

import { describe, expect, it } from "vitest";
import { buildQuery } from "../../../shared/dns/query.ts";
import { readHeader, readId, readQuestion } from "../../../shared/dns/wire.ts";
import { UpstreamError, type UpstreamErrorCode } from "../../../shared/engine/errors.ts";
import type { Upstream } from "../../../shared/engine/upstream.ts";

export interface UpstreamContractSubject {
  /** Names the transport in test names. */
  name: string;
  /** A fresh upstream to a delay-style server (above); each case closes its own. */
  make(): Upstream | Promise<Upstream>;
  /** DoH GET only: the message IDs the server behind it received, in order. */
  receivedIds?: () => readonly number[];
  /** The query bytes as this runtime's callers hold them (in Node, say, a Buffer). */
  bytes?: (query: Uint8Array) => Uint8Array;
  /** The upstream keeps connections and must report them (poolStats). */
  pooled?: boolean;
}

/** Long enough that a query for it is still in flight when the case aborts it. */
const SLOW = "3000.slow.contract.test";
/** When the in-flight case aborts, ms after sending. */
const ABORT_AFTER_MS = 50;

const live = () => new AbortController().signal;
const isPlain = (bytes: Uint8Array) => Object.getPrototypeOf(bytes) === Uint8Array.prototype;

/** The UpstreamError `promise` rejects with; fails the case if it resolves or rejects otherwise. */
async function rejection(
  promise: Promise<unknown>,
  code: UpstreamErrorCode,
): Promise<UpstreamError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(UpstreamError);
  expect((error as UpstreamError).code).toBe(code);
  return error as UpstreamError;
}

export function runUpstreamContract(subject: UpstreamContractSubject): void {
  const bytes = subject.bytes ?? ((query: Uint8Array) => query);
  const query = (name: string, id: number) => bytes(buildQuery(name, 1, { id }));

  async function withUpstream(use: (upstream: Upstream) => Promise<void>): Promise<void> {
    const upstream = await subject.make();
    try {
      await use(upstream);
    } finally {
      await upstream.close();
    }
  }

  describe(`Upstream contract: ${subject.name}`, () => {
    it("answers under the caller's ID, whatever went on the wire", () =>
      withUpstream(async (upstream) => {
        for (const id of [0, 0x1234, 0xffff]) {
          const answer = await upstream.query(query("0.id.contract.test", id), live());
          expect(readId(answer)).toBe(id);
          expect(readHeader(answer).qr).toBe(true);
          expect(readQuestion(answer).name).toBe("0.id.contract.test.");
        }
      }));

    it("leaves the caller's query as it was", () =>
      withUpstream(async (upstream) => {
        const message = query("0.query.contract.test", 0x0a0b);
        const before = Array.from(message);
        await upstream.query(message, live());
        expect(Array.from(message)).toEqual(before);
      }));

    it("hands over a plain Uint8Array the caller owns: changing it changes no later answer", () =>
      withUpstream(async (upstream) => {
        const first = await upstream.query(query("0.own.contract.test", 0x0102), live());
        expect(isPlain(first)).toBe(true);
        const before = Array.from(first);
        first.fill(0xff);
        const again = await upstream.query(query("0.own.contract.test", 0x0102), live());
        expect(Array.from(again)).toEqual(before);
      }));

    it("gives identical queries in flight at once their own IDs, in memory of their own", () =>
      withUpstream(async (upstream) => {
        const ids = [0x1111, 0x2222, 0x3333];
        const answers = await Promise.all(
          ids.map((id) => upstream.query(query("0.twins.contract.test", id), live())),
        );
        expect(answers.map(readId)).toEqual(ids);
        const others = answers.slice(1).map((answer) => Array.from(answer));
        answers[0]!.fill(0);
        expect(answers.slice(1).map((answer) => Array.from(answer))).toEqual(others);
      }));

    it("rejects a query whose signal already aborted with `aborted`, caused by its reason", () =>
      withUpstream(async (upstream) => {
        const reason = new Error("the client went away");
        const error = await rejection(
          upstream.query(query("0.early.contract.test", 1), AbortSignal.abort(reason)),
          "aborted",
        );
        expect(error.cause).toBe(reason);
      }));

    it("rejects promptly with `aborted` when the signal aborts in flight, then answers again", () =>
      withUpstream(async (upstream) => {
        const reason = new Error("the race was won elsewhere");
        const controller = new AbortController();
        const started = Date.now();
        const pending = upstream.query(query(SLOW, 2), controller.signal);
        setTimeout(() => controller.abort(reason), ABORT_AFTER_MS);
        const error = await rejection(pending, "aborted");
        expect(error.cause).toBe(reason);
        expect(Date.now() - started).toBeLessThan(1500);
        const answer = await upstream.query(query("0.after.contract.test", 3), live());
        expect(readId(answer)).toBe(3);
      }));

    it("rejects promptly with `aborted` when the signal aborts in the turn it was sent", () =>
      withUpstream(async (upstream) => {
        const controller = new AbortController();
        const started = Date.now();
        // On a fresh upstream: the abort lands while the connection, if any, is still opening.
        const pending = upstream.query(query(SLOW, 8), controller.signal);
        controller.abort(new Error("gave up at once"));
        await rejection(pending, "aborted");
        expect(Date.now() - started).toBeLessThan(1500);
        const answer = await upstream.query(query("0.after.contract.test", 9), live());
        expect(readId(answer)).toBe(9);
      }));

    it("rejects queries after close with `closed`, whether it was used or not", async () => {
      const unused = await subject.make();
      await unused.close();
      await rejection(unused.query(query("0.closed.contract.test", 4), live()), "closed");
      await withUpstream(async (upstream) => {
        await upstream.query(query("0.closed.contract.test", 5), live());
        await upstream.close();
        await rejection(upstream.query(query("0.closed.contract.test", 6), live()), "closed");
      });
    });

    it("rejects bytes that cannot be a DNS message with `bad_query`, then answers again", () =>
      withUpstream(async (upstream) => {
        for (const size of [0, 5, 11, 65536]) {
          await rejection(upstream.query(bytes(new Uint8Array(size)), live()), "bad_query");
        }
        const answer = await upstream.query(query("0.good.contract.test", 7), live());
        expect(readId(answer)).toBe(7);
      }));

    if (subject.pooled) {
      it("reports its connections: each query once, none in flight once answered, none open after close", () =>
        withUpstream(async (upstream) => {
          const stats = () => {
            expect(upstream.poolStats).toBeTypeOf("function");
            return upstream.poolStats!();
          };
          expect(stats()).toMatchObject({ open: 0, inFlight: 0, opened: 0, fresh: 0, reused: 0 });
          await Promise.all(
            [1, 2, 3].map((id) => upstream.query(query("0.stats.contract.test", id), live())),
          );
          const pending = upstream.query(query("200.stats.contract.test", 4), live());
          expect(stats().inFlight).toBe(1);
          await pending;
          const settled = stats();
          expect(settled.inFlight).toBe(0);
          expect(settled.fresh + settled.reused).toBe(4);
          expect(settled.fresh).toBe(settled.opened);
          expect(settled.open).toBeGreaterThanOrEqual(1);
          await upstream.close();
          expect(stats()).toMatchObject({ open: 0, inFlight: 0 });
        }));
    }

    const receivedIds = subject.receivedIds;
    if (receivedIds) {
      it("GET sends ID 0 on the wire (RFC 8484 §4.1) and answers under the caller's ID", () =>
        withUpstream(async (upstream) => {
          const seen = receivedIds().length;
          const answer = await upstream.query(query("0.get.contract.test", 0x4242), live());
          expect(readId(answer)).toBe(0x4242);
          expect(receivedIds().slice(seen)).toEqual([0]);
        }));
    }
  });
}
