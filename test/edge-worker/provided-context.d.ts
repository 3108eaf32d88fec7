// Ports the global setup (Node) provides to the worker tests (workerd).
import "vitest";

declare module "vitest" {
  export interface ProvidedContext {
    dohPort: number;
    unboundTlsPort: number;
    closedPort: number;
  }
}
