// The HTTP side of one DoH exchange (RFC 8484), apart from any HTTP client:
// what to request for a query, and what a response must be to count as its
// answer. The relay's HTTP/2 driver uses it; another client can too.

import { readId, setId, withId } from "../dns/wire.ts";
import { UpstreamError } from "../engine/errors.ts";
import { encodeBase64Url } from "./base64url.ts";
import { DNS_MESSAGE } from "./doh-request.ts";

export interface DohRequest {
  method: "POST" | "GET";
  /** Path plus query. */
  path: string;
  headers: Record<string, string>;
  /** The body for POST. */
  body: Uint8Array | undefined;
}

/** The request for `message` to the endpoint at `path`. */
export function dohRequest(method: "POST" | "GET", path: string, message: Uint8Array): DohRequest {
  if (method === "GET") {
    const sep = path.includes("?") ? "&" : "?";
    // ID 0 so HTTP caches can share answers (RFC 8484 §4.1); the caller's goes back on the answer.
    const dns = encodeBase64Url(withId(message, 0));
    return {
      method,
      path: `${path}${sep}dns=${dns}`,
      headers: { accept: DNS_MESSAGE },
      body: undefined,
    };
  }
  return {
    method,
    path,
    headers: { accept: DNS_MESSAGE, "content-type": DNS_MESSAGE },
    body: message,
  };
}

export interface DohResponse {
  /** 0 when no response head arrived. */
  status: number;
  contentType: string;
  /** The body, in memory the caller hands over (it becomes the answer). */
  body: Uint8Array;
}

/**
 * The answer in a DoH response, under the query's ID; an UpstreamError
 * (`read`, `http_status`, `malformed_answer`) when the response is not one.
 */
export function dohAnswer(
  upstream: string,
  response: DohResponse,
  method: "POST" | "GET",
  query: Uint8Array,
): Uint8Array {
  const { status, contentType, body } = response;
  if (status === 0) {
    throw new UpstreamError("read", upstream, `${upstream}: stream ended without a response`);
  }
  if (status < 200 || status > 299) {
    throw new UpstreamError("http_status", upstream, `${upstream}: HTTP ${status}`, { status });
  }
  if (!contentType.toLowerCase().startsWith(DNS_MESSAGE)) {
    throw new UpstreamError(
      "malformed_answer",
      upstream,
      `${upstream}: content-type ${contentType}`,
    );
  }
  if (method === "GET" && body.length >= 12) setId(body, readId(query));
  return body;
}
