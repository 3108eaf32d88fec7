// DoH client over the Fetch API (RFC 8484): the worker's https://, http://
// and h3:// upstreams, and its calls to a relay's origin endpoint. Works in
// any runtime with fetch; the relay uses its own pooled HTTP/2 client.

import { padQuery } from "../dns/edns-options.ts";
import { MAX_MESSAGE_SIZE, readId, setId, withId } from "../dns/wire.ts";
import { encodeBase64Url } from "../doh/base64url.ts";
import { readBoundedBody } from "../doh/bounded-body.ts";
import { DNS_MESSAGE } from "../doh/doh-request.ts";
import { abortedBy, toUpstreamError, UpstreamError } from "../engine/errors.ts";
import { type Upstream, unsendable } from "../engine/upstream.ts";

export interface FetchDohOptions {
  name: string;
  /** The DoH endpoint: https://host/path (or http://). */
  url: string;
  /** POST (default) or GET; GET sends ID 0 so HTTP caches can share answers. */
  method?: "POST" | "GET";
  /** Extra request headers (e.g. the relay origin's Authorization). */
  headers?: Record<string, string>;
  fetch?: typeof fetch;
}

export function createFetchDohUpstream(options: FetchDohOptions): Upstream {
  const { name } = options;
  const doFetch = options.fetch ?? ((input, init) => fetch(input, init));
  const method = options.method ?? "POST";
  // RFC 8467 padding on encrypted hops only: plain http:// is for loopback and tunnels.
  const encrypted = new URL(options.url).protocol === "https:";
  let closed = false;

  // The request headers, made once: fetch copies them into each request.
  const getHeaders = { accept: DNS_MESSAGE, ...options.headers };
  const postHeaders = { ...getHeaders, "content-type": DNS_MESSAGE };

  async function send(message: Uint8Array, signal: AbortSignal): Promise<Response> {
    try {
      if (method === "GET") {
        const url = new URL(options.url);
        url.searchParams.set("dns", encodeBase64Url(withId(message, 0)));
        return await doFetch(url, { method: "GET", headers: getHeaders, signal });
      }
      return await doFetch(options.url, {
        method: "POST",
        headers: postHeaders,
        body: message as Uint8Array<ArrayBuffer>,
        signal,
      });
    } catch (error) {
      if (signal.aborted) throw abortedBy(signal, name);
      throw new UpstreamError("connect", name, `${name}: ${describe(error)}`, { cause: error });
    }
  }

  return {
    name,
    async query(message, signal) {
      if (closed) throw new UpstreamError("closed", name);
      if (signal.aborted) throw abortedBy(signal, name);
      const bad = unsendable(message, name);
      if (bad) throw bad;
      const response = await send(encrypted ? padQuery(message) : message, signal);
      try {
        if (response.status !== 200) {
          throw new UpstreamError("http_status", name, `${name}: HTTP ${response.status}`, {
            status: response.status,
          });
        }
        const type = (response.headers.get("content-type") ?? "").split(";")[0]!.trim();
        if (type.toLowerCase() !== DNS_MESSAGE) {
          throw new UpstreamError(
            "malformed_answer",
            name,
            `${name}: content-type "${type}" is not ${DNS_MESSAGE}`,
          );
        }
        const body = await readBounded(response, name);
        if (body.length < 12) {
          throw new UpstreamError(
            "malformed_answer",
            name,
            `${name}: answer shorter than a header`,
          );
        }
        // The body is fresh memory, ours alone: the caller's ID goes back in place.
        if (method === "GET") setId(body, readId(message));
        return body;
      } catch (error) {
        await response.body?.cancel().catch(() => {});
        if (signal.aborted) throw abortedBy(signal, name);
        throw toUpstreamError(error, name);
      }
    },
    async close() {
      closed = true;
    },
  };
}

const describe = (error: unknown) => (error instanceof Error ? error.message : String(error));

async function readBounded(response: Response, name: string): Promise<Uint8Array> {
  let bytes: Uint8Array | "too_large";
  try {
    bytes = await readBoundedBody(response, MAX_MESSAGE_SIZE);
  } catch (error) {
    throw new UpstreamError("read", name, `${name}: ${describe(error)}`, { cause: error });
  }
  if (bytes === "too_large") {
    throw new UpstreamError("malformed_answer", name, `${name}: answer larger than 65535 bytes`);
  }
  return bytes;
}
