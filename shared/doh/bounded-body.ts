// The one way an HTTP body is read anywhere a DNS message travels over HTTP
// (DoH requests, DoH answers, the relay's origin endpoint): at most `limit`
// bytes are buffered. A declared or streamed body past the limit is
// "too_large" and the rest is never read. The bytes returned are a fresh
// copy the caller owns. readBoundedBody reads web streams; a reader fed by
// events (a Node stream's "data") uses createBoundedBytes directly.

export interface BodySource {
  readonly headers: Headers;
  readonly body: ReadableStream<Uint8Array> | null;
  /** The whole body at once (Request and Response have it): used when its length is declared. */
  arrayBuffer?(): Promise<ArrayBuffer>;
}

/** Chunks kept up to a limit. */
export interface BoundedBytes {
  /** Keeps `chunk`; false (and keeps nothing more) once the total passes the limit. */
  push(chunk: Uint8Array): boolean;
  /** Everything kept, joined in fresh memory the caller may write into (e.g. an ID). */
  bytes(): Uint8Array;
}

export function createBoundedBytes(limit: number): BoundedBytes {
  const chunks: Uint8Array[] = [];
  let size = 0;
  let over = false;
  return {
    push(chunk) {
      over ||= size + chunk.byteLength > limit;
      if (over) return false;
      size += chunk.byteLength;
      chunks.push(chunk);
      return true;
    },
    bytes() {
      const out = new Uint8Array(size);
      let offset = 0;
      for (const chunk of chunks) {
        out.set(chunk, offset);
        offset += chunk.byteLength;
      }
      return out;
    },
  };
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
  const declared = source.headers.get("content-length");
  if (Number(declared ?? "0") > limit) return "too_large";
  signal?.throwIfAborted();
  // A declared length within the limit bounds the body by HTTP framing: the
  // runtime reads it natively, without a promise per chunk (a third of the
  // worker's CPU on a cache miss went to the reader loop), and `body` is
  // never touched (workerd builds a stream object for it).
  if (declared !== null && source.arrayBuffer) return readDeclared(source.arrayBuffer(), signal);
  if (source.body === null) return new Uint8Array(0);
  const reader = source.body.getReader();
  const stop = () => reader.cancel(signal?.reason).catch(() => {});
  signal?.addEventListener("abort", stop, { once: true });
  try {
    const kept = createBoundedBytes(limit);
    for (;;) {
      const { done, value } = await reader.read();
      signal?.throwIfAborted(); // a cancelled read ends as if the body had
      if (done) return kept.bytes();
      if (!kept.push(value)) {
        await stop();
        return "too_large";
      }
    }
  } finally {
    signal?.removeEventListener("abort", stop);
  }
}

/** A body of declared length, read at once; rejects with the signal's reason if it aborts first. */
async function readDeclared(
  whole: Promise<ArrayBuffer>,
  signal: AbortSignal | undefined,
): Promise<Uint8Array> {
  if (!signal) return new Uint8Array(await whole);
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  whole.catch(() => {}); // read on past an abort, bounded by the declared length
  try {
    return new Uint8Array(await Promise.race([whole, aborted]));
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}
