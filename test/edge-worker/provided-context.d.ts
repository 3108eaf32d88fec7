// Ports the global setup (Node) provides to the worker tests (workerd).
import "vitest";

declare module "vitest" {
  export interface ProvidedContext {
    dohPort: number;
    /** DoT (test CA, name dns.test) in front of a delay-style DNS server (test/support/delay-dns-server.ts). */
    delayTlsPort: number;
    unboundTlsPort: number;
    closedPort: number;
    /** DoT whose certificate chains to a CA the system does not trust. */
    untrustedTlsPort: number;
    /** The relay's origin endpoint (HTTP/1.1 and h2c on 127.0.0.1). */
    relayOriginPort: number;
    /** Its bearer token (the worker's RELAY_TOKEN secret). */
    relayToken: string;
    /** The relay's /metrics (counts what reached its origin endpoint). */
    relayMetricsPort: number;
  }
}
