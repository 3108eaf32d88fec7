// The one way an HTTP body is read anywhere a DNS message travels over HTTP
// (DoH requests, DoH answers, the relay's origin endpoint): at most `limit`
// bytes are buffered. A declared or streamed body past the limit is
// "too_large" and the rest is never read. The bytes returned are a fresh
// copy the caller owns.

export interface BodySource {
  readonly headers: Headers;
  readonly body: ReadableStream<Uint8Array> | null;
}

/**
 * Reads the body of a Request or Response, or "too_large" when it declares or
 * sends more than `limit` bytes. When `signal` aborts first the read stops
 * (the stream is cancelled) and the promise rejects with the signal's reason.
 */
export async function readBoundedBody(
  source: BodySource,
  limit: number,
  signal?: AbortSignal,
): Promise<Uint8Array | "too_large"> {
  if (Number(source.headers.get("content-length") ?? "0") > limit) return "too_large";
  if (source.body === null) return new Uint8Array(0);
  signal?.throwIfAborted();
  const reader = source.body.getReader();
  const stop = () => reader.cancel(signal?.reason).catch(() => {});
  signal?.addEventListener("abort", stop, { once: true });
  try {
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      signal?.throwIfAborted(); // a cancelled read ends as if the body had
      if (done) return concat(chunks, size);
      size += value.byteLength;
      if (size > limit) {
        await stop();
        return "too_large";
      }
      chunks.push(value);
    }
  } finally {
    signal?.removeEventListener("abort", stop);
  }
}

/** The chunks joined in fresh memory: the caller may write into it (e.g. an ID). */
function concat(chunks: readonly Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}
