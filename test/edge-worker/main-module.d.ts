// The worker tests' main module (vitest.config.ts), typed for
// `exports.default` from cloudflare:workers. Worker types only: the Node-side
// type check leaves this file out.

declare namespace Cloudflare {
  interface GlobalProps {
    mainModule: typeof import("./self-worker.ts");
  }
}
