import { describe, expect, it } from "vitest";
import { createBoundedBytes, readBoundedBody } from "../../shared/doh/bounded-body.ts";

/** A body of `chunks` chunks of `size` bytes each, counting how many were pulled. */
function counted(chunks: number, size: number) {
  const stats = { pulled: 0, cancelled: false };
  const body = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (stats.pulled === chunks) return controller.close();
        stats.pulled++;
        controller.enqueue(new Uint8Array(size).fill(stats.pulled));
      },
      cancel() {
        stats.cancelled = true;
      },
    },
    { highWaterMark: 0 }, // pulled only when read
  );
  return { body, stats };
}

const source = (body: ReadableStream<Uint8Array> | null, headers: Record<string, string> = {}) => ({
  headers: new Headers(headers),
  body,
});

describe("readBoundedBody", () => {
  it("reads a body of exactly the limit, chunk by chunk, into one array", async () => {
    const { body } = counted(4, 10);
    const bytes = await readBoundedBody(source(body), 40);
    expect(bytes).toBeInstanceOf(Uint8Array);
    expect(Array.from(bytes as Uint8Array)).toEqual([1, 2, 3, 4].flatMap((n) => Array(10).fill(n)));
  });

  it("says too_large from a declared content-length without reading a byte", async () => {
    const { body, stats } = counted(1, 10);
    expect(await readBoundedBody(source(body, { "content-length": "41" }), 40)).toBe("too_large");
    expect(stats.pulled).toBe(0);
  });

  it("stops at the first byte past the limit and cancels the rest of the stream", async () => {
    const { body, stats } = counted(1000, 10);
    expect(await readBoundedBody(source(body), 40)).toBe("too_large");
    expect(stats.pulled).toBe(5); // the chunk that crossed the limit, and no more
    expect(stats.cancelled).toBe(true);
  });

  it("reads a Request's and a Response's body alike; no body is zero bytes", async () => {
    const request = new Request("https://x.test/", { method: "POST", body: "abc" });
    expect(await readBoundedBody(request, 3)).toEqual(new TextEncoder().encode("abc"));
    expect(await readBoundedBody(new Response("abcd"), 3)).toBe("too_large");
    expect(await readBoundedBody(new Response(null), 3)).toEqual(new Uint8Array(0));
  });

  it("returns fresh memory the caller may write into", async () => {
    const chunk = Uint8Array.from([1, 2, 3]);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(chunk);
        controller.close();
      },
    });
    const bytes = (await readBoundedBody(source(body), 10)) as Uint8Array;
    bytes[0] = 9;
    expect(chunk[0]).toBe(1);
  });

  it("rejects with the signal's reason when it aborts mid-body, and cancels the stream", async () => {
    let cancelled = false;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array(5)); // then nothing more: a stalled sender
      },
      cancel() {
        cancelled = true;
      },
    });
    const controller = new AbortController();
    const reading = readBoundedBody(source(body), 100, controller.signal);
    const reason = new Error("read_timeout");
    setTimeout(() => controller.abort(reason), 20);
    await expect(reading).rejects.toBe(reason);
    expect(cancelled).toBe(true);
  });

  it("rejects at once for a signal aborted before the read", async () => {
    const { body, stats } = counted(2, 10);
    const signal = AbortSignal.abort(new Error("gone"));
    await expect(readBoundedBody(source(body), 100, signal)).rejects.toThrow("gone");
    expect(stats.pulled).toBe(0);
  });
});

describe("createBoundedBytes", () => {
  it("keeps chunks up to the limit and refuses the one that passes it", () => {
    const kept = createBoundedBytes(5);
    expect(kept.push(Uint8Array.from([1, 2]))).toBe(true);
    expect(kept.push(Uint8Array.from([3, 4, 5]))).toBe(true);
    expect(kept.push(Uint8Array.from([6]))).toBe(false);
    expect(Array.from(kept.bytes())).toEqual([1, 2, 3, 4, 5]);
  });

  it("keeps nothing more once refused, even what would still fit", () => {
    const kept = createBoundedBytes(5);
    expect(kept.push(Uint8Array.from([1, 2, 3]))).toBe(true);
    expect(kept.push(Uint8Array.from([4, 5, 6]))).toBe(false);
    expect(kept.push(Uint8Array.from([7]))).toBe(false);
    expect(Array.from(kept.bytes())).toEqual([1, 2, 3]);
  });
});
