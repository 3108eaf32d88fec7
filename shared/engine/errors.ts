// Typed upstream failures with stable codes, and their bounded metric classes
// (fanout's request_error_count_total{error} label).

import { DohEdgeError } from "../errors.ts";

export const UPSTREAM_ERROR_CODES = [
  "timeout", // no answer in time (attempt or whole-query deadline)
  "connect", // could not open a connection
  "tls", // TLS handshake or certificate failure
  "send", // writing the query failed
  "read", // reading the answer failed (connection reset mid-answer, ...)
  "http_status", // DoH answered with a non-2xx status
  "malformed_answer", // bytes that are not a valid DNS response
  "id_mismatch", // a response with another message ID
  "question_mismatch", // a response to another question
  "busy", // the transport refused more work (pool at max_in_flight)
  "closed", // the upstream was closed
  "aborted", // cancelled locally (a losing attempt, or the caller gave up)
  "all_failed", // every attempt of a query failed
  "bad_query", // the query itself cannot be forwarded (not a DNS message)
  "internal", // anything else: a bug or an untyped error from a transport
] as const;

export type UpstreamErrorCode = (typeof UPSTREAM_ERROR_CODES)[number];

export interface UpstreamErrorOptions {
  cause?: unknown;
  /** HTTP status for `http_status`. */
  status?: number;
  /** The attempt errors behind an `all_failed` or a query `timeout`. */
  errors?: readonly UpstreamError[];
}

export class UpstreamError extends DohEdgeError {
  override readonly name = "UpstreamError";
  readonly code: UpstreamErrorCode;
  /** Name of the upstream (or route) that failed. */
  readonly upstream: string;
  readonly status: number | undefined;
  readonly errors: readonly UpstreamError[];

  constructor(
    code: UpstreamErrorCode,
    upstream: string,
    message?: string,
    options: UpstreamErrorOptions = {},
  ) {
    super(message ?? `${upstream}: ${code.replace(/_/g, " ")}`, { cause: options.cause });
    this.code = code;
    this.upstream = upstream;
    this.status = options.status;
    this.errors = options.errors ?? [];
  }
}

/** Bounded error classes for metrics and debug logs (fanout's names where it has one). */
export const ERROR_CLASSES = [
  "timeout",
  "connect_failed",
  "tls_failed",
  "request_send_failed",
  "response_read_failed",
  "response_decode_failed",
  "http_status",
  "id_mismatch",
  "question_mismatch",
  "busy",
  "closed",
  "other",
] as const;

export type ErrorClass = (typeof ERROR_CLASSES)[number];

const CLASS_OF_CODE: Readonly<Record<UpstreamErrorCode, ErrorClass>> = {
  timeout: "timeout",
  connect: "connect_failed",
  tls: "tls_failed",
  send: "request_send_failed",
  read: "response_read_failed",
  http_status: "http_status",
  malformed_answer: "response_decode_failed",
  id_mismatch: "id_mismatch",
  question_mismatch: "question_mismatch",
  busy: "busy",
  closed: "closed",
  aborted: "other", // an upstream that gave up on its own; our own cancels are not errors
  all_failed: "other",
  bad_query: "other",
  internal: "other",
};

export function errorClassOf(error: UpstreamError | UpstreamErrorCode): ErrorClass {
  return CLASS_OF_CODE[typeof error === "string" ? error : error.code];
}

function isCode(value: unknown): value is UpstreamErrorCode {
  return typeof value === "string" && (UPSTREAM_ERROR_CODES as readonly string[]).includes(value);
}

/**
 * Any rejection from a transport as an UpstreamError: an UpstreamError passes
 * through, a DOMException TimeoutError/AbortError maps to timeout/aborted, an
 * error carrying one of our codes keeps it, anything else is `internal`.
 */
/** The error a transport rejects with once `signal` aborts: `aborted`, caused by the signal's reason. */
export function abortedBy(signal: AbortSignal, upstream: string): UpstreamError {
  return new UpstreamError("aborted", upstream, undefined, { cause: signal.reason });
}

export function toUpstreamError(error: unknown, upstream: string): UpstreamError {
  if (error instanceof UpstreamError) return error;
  const name = error instanceof Error ? error.name : undefined;
  const message = error instanceof Error ? error.message : String(error);
  if (name === "TimeoutError")
    return new UpstreamError("timeout", upstream, message, { cause: error });
  if (name === "AbortError")
    return new UpstreamError("aborted", upstream, message, { cause: error });
  const code = (error as { code?: unknown } | null)?.code;
  if (isCode(code)) return new UpstreamError(code, upstream, message, { cause: error });
  return new UpstreamError("internal", upstream, `${upstream}: ${message}`, { cause: error });
}

/** A bad engine option, found when a route is built (never per query). */
export class EngineConfigError extends DohEdgeError {
  override readonly name = "EngineConfigError";
  readonly code = "bad_option";

  constructor(message: string) {
    super(message);
  }
}
