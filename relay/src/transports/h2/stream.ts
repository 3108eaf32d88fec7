// One DoH exchange on an HTTP/2 session (client-session.ts): the request,
// its caller's promise, its send window, and the response as it arrives.

import type { DohRequest, DohResponse } from "../../../../shared/doh/doh-exchange.ts";
import type { UpstreamError } from "../../../../shared/engine/errors.ts";

export interface Stream {
  /** 0 until the stream starts. */
  id: number;
  request: DohRequest;
  resolve: (response: DohResponse) => void;
  reject: (error: UpstreamError) => void;
  signal: AbortSignal;
  onAbort: () => void;
  /** What is left to send of the body, and the window for it. */
  pending: Uint8Array | undefined;
  sendWindow: number;
  status: number;
  contentType: string;
  chunks: Uint8Array[];
  size: number;
}

export function newStream(
  request: DohRequest,
  signal: AbortSignal,
  settle: Pick<Stream, "resolve" | "reject">,
): Stream {
  return {
    id: 0,
    request,
    ...settle,
    signal,
    onAbort: () => {},
    pending: undefined,
    sendWindow: 0,
    status: 0,
    contentType: "",
    chunks: [],
    size: 0,
  };
}

/** The response body in fresh memory (the chunks are views of socket reads). */
export function streamBody(stream: Stream): Uint8Array {
  const body = new Uint8Array(stream.size);
  let at = 0;
  for (const chunk of stream.chunks) {
    body.set(chunk, at);
    at += chunk.length;
  }
  return body;
}
