// RFC 8484 request handling shared by every DoH front (the worker, and the
// relay's DoH listener): turns an HTTP request into a DNS query or an HTTP
// error. HTTP errors only for HTTP problems; DNS problems are answered in DNS.

import { buildQuery, NameSyntaxError } from "../dns/query.ts";
import { EDNS_UDP_SIZE, MAX_MESSAGE_SIZE, readHeader, rrTypeFromName } from "../dns/wire.ts";
import { decodeBase64Url } from "./base64url.ts";
import { readBoundedBody } from "./bounded-body.ts";

export const DNS_MESSAGE = "application/dns-message";
export const DNS_JSON = "application/dns-json";
/** Where DoH is served (RFC 8484 §3's example path, used by every public resolver). */
export const DOH_PATH = "/dns-query";

export type DohQuery =
  | { format: "wire"; query: Uint8Array }
  | { format: "json"; query: Uint8Array; name: string; type: number };

type HttpError = 400 | 405 | 408 | 413 | 415;

export type DohRequestResult =
  | { ok: true; value: DohQuery }
  | { ok: false; status: HttpError; message: string };

const fail = (status: HttpError, message: string): DohRequestResult => ({
  ok: false,
  status,
  message,
});

/**
 * Reads a DoH request on the dns-query path (GET ?dns=, POST body, or JSON
 * when asked). A POST body must arrive within `bodyTimeoutMs` when given (408).
 */
export async function readDohRequest(
  request: Request,
  bodyTimeoutMs?: number,
): Promise<DohRequestResult> {
  if (request.method === "GET" || request.method === "HEAD") {
    const url = new URL(request.url);
    const dns = url.searchParams.get("dns");
    if (dns === null) {
      if (url.searchParams.has("name") || acceptsJson(request)) return readJsonQuery(url);
      return fail(400, "missing dns query parameter");
    }
    // 65,535 bytes of message take at most 87,380 base64url characters.
    if (dns.length > Math.ceil((MAX_MESSAGE_SIZE * 4) / 3) + 2) {
      return fail(413, "dns parameter longer than a 65535-byte message");
    }
    const bytes = decodeBase64Url(dns);
    if (bytes === undefined) return fail(400, "dns parameter is not base64url");
    return checkWireQuery(bytes);
  }
  if (request.method === "POST") {
    const type = (request.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    if (type !== DNS_MESSAGE) return fail(415, `content-type must be ${DNS_MESSAGE}`);
    const deadline = bodyTimeoutMs === undefined ? undefined : AbortSignal.timeout(bodyTimeoutMs);
    let body: Uint8Array | "too_large";
    try {
      body = await readBoundedBody(request, MAX_MESSAGE_SIZE, deadline);
    } catch (error) {
      if (deadline?.aborted) return fail(408, "request body not received in time");
      throw error;
    }
    if (body === "too_large") return fail(413, "body larger than 65535 bytes");
    return checkWireQuery(body);
  }
  return fail(405, "method not allowed: use GET or POST");
}

/** Reads the JSON API form (`/resolve?name=&type=`). */
export function readJsonQuery(url: URL): DohRequestResult {
  const name = url.searchParams.get("name");
  if (name === null || name === "") return fail(400, "missing name parameter");
  const typeParam = url.searchParams.get("type") ?? "A";
  const type = /^\d+$/.test(typeParam) ? Number(typeParam) : rrTypeFromName(typeParam);
  if (type === undefined || type < 1 || type > 65535) {
    return fail(400, `unknown type "${typeParam}"`);
  }
  const flag = (key: string) => {
    const v = url.searchParams.get(key);
    return v !== null && v !== "0" && v !== "false";
  };
  const fqdn = name.endsWith(".") ? name : `${name}.`;
  try {
    const query = buildQuery(fqdn, type, {
      dnssecOk: flag("do"),
      checkingDisabled: flag("cd"),
      ednsUdpSize: EDNS_UDP_SIZE,
    });
    return { ok: true, value: { format: "json", query, name: fqdn, type } };
  } catch (error) {
    if (error instanceof NameSyntaxError) return fail(400, `invalid name: ${error.message}`);
    throw error;
  }
}

export function acceptsJson(request: Request): boolean {
  return (request.headers.get("accept") ?? "").toLowerCase().includes(DNS_JSON);
}

function checkWireQuery(bytes: Uint8Array): DohRequestResult {
  if (bytes.length > MAX_MESSAGE_SIZE) return fail(413, "message larger than 65535 bytes");
  if (bytes.length < 12) return fail(400, "not a DNS message: shorter than a header");
  const header = readHeader(bytes);
  if (header.qr) return fail(400, "not a DNS query: QR bit set");
  if (header.qdcount !== 1) return fail(400, "not a DNS query: expected one question");
  return { ok: true, value: { format: "wire", query: bytes } };
}
