// The edge worker: RFC 8484 DoH and the JSON API on Cloudflare Workers.

// First: fengari (Lua policies) must find process.binding answering at import.
import "./workerd-shims.ts";
import type { Env } from "./env.ts";
import { workerState } from "./worker-state.ts";

/** Handles one request with the state built for this env (exported for tests). */
export async function handle(request: Request, env: Env): Promise<Response> {
  const state = workerState(env);
  if (!state.ok) return configError(state.message);
  if (state.ready) {
    try {
      await state.ready;
    } catch (error) {
      return configError((error as Error).message);
    }
  }
  return state.app.fetch(request);
}

function configError(message: string): Response {
  return new Response(`configuration error: ${message}\n`, {
    status: 500,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

export default {
  fetch: (request, env) => handle(request, env),
} satisfies ExportedHandler<Env>;
