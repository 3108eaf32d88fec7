// The edge worker as the test project's `main`, reached through
// `exports.default` (cloudflare:workers): each fetch is a request of its own
// (its own request context), like a browser's. The config comes in a header because the servers' ports are
// known only once the global setup has run.

import type { Env } from "../../edge-worker/src/env.ts";
import worker from "../../edge-worker/src/index.ts";

export const CONFIG_HEADER = "x-test-doh-config";

export default {
  fetch(request, env) {
    const config = request.headers.get(CONFIG_HEADER) ?? undefined;
    return worker.fetch(request, { ...env, DOH_CONFIG: config });
  },
} satisfies ExportedHandler<Env>;
