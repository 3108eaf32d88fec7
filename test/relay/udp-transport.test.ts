// The relay's UDP upstream: queries multiplexed by ID over a few sockets,
// source ports rotated, answers matched to the right caller.

import { createSocket } from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUdpUpstream } from "../../relay/src/transports/udp.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { buildErrorResponse, Rcode, readId, readQuestion } from "../../shared/dns/wire.ts";

// Answers every query (NOERROR, question echoed) after a random short delay,
// out of order, and records the source port of each query.
const server = createSocket("udp4");
const sourcePorts: number[] = [];
let port: number;

beforeAll(async () => {
  server.on("message", (msg, rinfo) => {
    sourcePorts.push(rinfo.port);
    const answer = buildErrorResponse(new Uint8Array(msg), Rcode.NOERROR);
    setTimeout(() => server.send(answer, rinfo.port, rinfo.address), Math.random() * 20);
  });
  await new Promise<void>((resolve) => server.bind(0, "127.0.0.1", resolve));
  port = server.address().port;
});

afterAll(() => server.close());

describe("UDP upstream transport", () => {
  it("answers 100 concurrent queries with colliding client IDs, each with its own answer", async () => {
    const upstream = createUdpUpstream({
      name: "t",
      host: "127.0.0.1",
      port,
      connectTimeoutMs: 1000,
      sockets: 2,
    });
    const signal = new AbortController().signal;
    const names = Array.from({ length: 100 }, (_, i) => `q${i}.example.`);
    const answers = await Promise.all(
      names.map((name) => upstream.query(buildQuery(name, 1, { id: 42 }), signal)),
    );
    answers.forEach((answer, i) => {
      expect(readId(answer)).toBe(42);
      expect(readQuestion(answer).name).toBe(names[i]);
    });
    await upstream.close();
  });

  it("uses a bounded set of sockets and moves to fresh source ports after queriesPerSocket", async () => {
    sourcePorts.length = 0;
    const upstream = createUdpUpstream({
      name: "t",
      host: "127.0.0.1",
      port,
      connectTimeoutMs: 1000,
      sockets: 1,
      queriesPerSocket: 10,
    });
    const signal = new AbortController().signal;
    for (let i = 0; i < 30; i++) await upstream.query(buildQuery("a.example.", 1), signal);
    expect(new Set(sourcePorts).size).toBe(3);
    await upstream.close();
  });

  it("rejects an aborted query without disturbing the others, and refuses after close", async () => {
    const upstream = createUdpUpstream({
      name: "t",
      host: "127.0.0.1",
      port,
      connectTimeoutMs: 1000,
    });
    const aborted = new AbortController();
    aborted.abort();
    await expect(upstream.query(buildQuery("a.example.", 1), aborted.signal)).rejects.toBeDefined();
    const ok = await upstream.query(
      buildQuery("b.example.", 1, { id: 9 }),
      new AbortController().signal,
    );
    expect(readId(ok)).toBe(9);
    await upstream.close();
    await expect(
      upstream.query(buildQuery("c.example.", 1), new AbortController().signal),
    ).rejects.toMatchObject({ code: "closed" });
  });
});
