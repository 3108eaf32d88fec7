// TLS settings of an upstream, turned into Node's connect options in one
// place (DoT and HTTP/2 DoH), and the one rule for telling a TLS failure
// from a network one while a connection opens.

import type { Buffer } from "node:buffer";
import { isIP } from "node:net";
import type { ConnectionOptions } from "node:tls";
import type { LookupFunction } from "./bootstrap.ts";

export interface TlsSettings {
  /** Name the certificate must carry, also the SNI (default: the host unless it is an IP). */
  servername?: string | undefined;
  /** Trusted CAs, PEM (default: Node's bundled roots). */
  ca?: string | undefined;
  /** Client certificate and key, PEM. */
  cert?: string | undefined;
  key?: string | undefined;
}

/** Node TLS connect options for `host`:`port` (TLS 1.2 at least; the session to resume, if any). */
export function tlsConnectOptions(
  host: string,
  port: number,
  tls: TlsSettings,
  extra: { lookup?: LookupFunction | undefined; session?: Buffer | undefined } = {},
): ConnectionOptions {
  const options: ConnectionOptions = {
    host,
    port,
    servername: tls.servername ?? (isIP(host) ? undefined : host),
    minVersion: "TLSv1.2",
  };
  if (tls.ca) options.ca = tls.ca;
  if (tls.cert) options.cert = tls.cert;
  if (tls.key) options.key = tls.key;
  if (extra.lookup) options.lookup = extra.lookup;
  if (extra.session) options.session = extra.session;
  return options;
}

const TLS_ERROR = /certificate|cert_|self.signed|ssl|tls|handshake|verify/i;
const NETWORK_ERRORS = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/**
 * `tls` or `connect` for an error while a connection opens. A reset or a
 * refusal is the network's doing even mid-handshake (a server going down);
 * certificate and protocol failures, and anything once the handshake has
 * begun, are TLS's.
 */
export function openErrorCode(error: unknown, handshaking: boolean): "tls" | "connect" {
  if (NETWORK_ERRORS.has((error as NodeJS.ErrnoException | null)?.code ?? "")) return "connect";
  return handshaking || TLS_ERROR.test(String(error)) ? "tls" : "connect";
}
