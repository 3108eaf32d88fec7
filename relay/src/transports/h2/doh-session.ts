// The seam between the DoH pool (../doh-h2.ts) and an HTTP/2 client: one
// session to one origin carrying many DoH exchanges. The pool picks, opens
// and retires sessions; a session knows only its connection.

import type { LookupFunction } from "../bootstrap.ts";

export interface DohRequest {
  method: "GET" | "POST";
  /** Path plus query, e.g. "/dns-query" or "/dns-query?dns=…". */
  path: string;
  /** The DNS message (POST only). */
  body?: Uint8Array;
}

export interface DohResponse {
  status: number;
  /** The content-type field, "" without one. */
  contentType: string;
  /** The body, in memory of its own. */
  body: Uint8Array;
}

export interface DohSessionOptions {
  /** The upstream's name, for errors. */
  name: string;
  host: string;
  port: number;
  /** Sent as :authority, e.g. "dns.example" or "dns.example:8443". */
  authority: string;
  tls?: { servername?: string; ca?: string; cert?: string; key?: string };
  /** Connect plus TLS handshake, ms. */
  connectTimeoutMs: number;
  lookup?: LookupFunction | undefined;
  /** A TLS session ticket to resume. */
  tlsSession?: Buffer | undefined;
  /** Called with each new TLS session ticket. */
  onTlsSession?: (ticket: Buffer) => void;
}

export interface DohSession {
  /** Settles once the session carries streams; rejects with an UpstreamError ("connect" or "tls"). */
  readonly ready: Promise<void>;
  /** Whether new streams may start: connected or connecting, no GOAWAY, not closed. */
  usable(): boolean;
  /** Whether TLS resumed a session from a ticket. */
  resumed(): boolean;
  /**
   * One exchange. Rejects with an UpstreamError: "read" when the stream or
   * the session fails before the answer, "malformed_answer" for a body over
   * 65,535 bytes, the signal's reason (abortedBy) on abort.
   */
  request(request: DohRequest, signal: AbortSignal): Promise<DohResponse>;
  /** Closes once the streams in flight are done; no new ones. */
  close(): void;
  /** Closes at once, failing the streams in flight. */
  destroy(): void;
  /** `listener` runs once, when the session stops taking streams (GOAWAY, close, error). */
  onGone(listener: () => void): void;
}

export type DohSessionFactory = (options: DohSessionOptions) => DohSession;
