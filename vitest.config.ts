import { defineConfig } from "vitest/config";
import { ensureTestCa } from "./test/tools/test-ca.ts";

// Before Miniflare loads: it reads NODE_EXTRA_CA_CERTS once, at import.
ensureTestCa();
const { cloudflareTest } = await import("@cloudflare/vitest-plugin");

const workerdRuntime = { compatibilityDate: "2026-10-20", compatibilityFlags: ["nodejs_compat"] };

// Three projects: Node tests; the shared-core tests a second time inside
// workerd to prove shared/ works in the Workers runtime; the worker's tests.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "node",
          include: ["test/**/*.test.ts"],
          exclude: ["test/workerd/**", "test/edge-worker/**"],
          testTimeout: 20_000,
        },
      },
      {
        plugins: [cloudflareTest({ miniflare: workerdRuntime })],
        test: {
          name: "workerd",
          include: ["test/shared/**/*.test.ts", "test/workerd/**/*.test.ts"],
          // fengari (Lua policies) needs it before it loads (the file says why).
          setupFiles: ["./edge-worker/src/workerd-shims.ts"],
          testTimeout: 20_000,
        },
      },
      {
        // The worker inside workerd, against real servers the global setup
        // starts; exports.default reaches it as separate requests (test/edge-worker/self-worker.ts).
        plugins: [
          cloudflareTest({
            main: "./test/edge-worker/self-worker.ts",
            miniflare: {
              ...workerdRuntime,
              // Block lists given as { asset } (test/fixtures/worker-assets/README.md).
              assets: { directory: "./test/fixtures/worker-assets", binding: "ASSETS" },
              // wrangler.toml's rule: Lua policy scripts are bundled as text.
              modulesRules: [{ type: "Text", include: ["**/*.lua"], fallthrough: true }],
            },
          }),
        ],
        // The worker's tests run the Lua build (wrangler.toml's define is
        // false; test/tools/worker-build.test.ts builds both with wrangler).
        define: { DOH_EDGE_LUA: "true" },
        test: {
          name: "edge-worker",
          include: ["test/edge-worker/**/*.test.ts"],
          setupFiles: ["./edge-worker/src/workerd-shims.ts"],
          globalSetup: ["test/edge-worker/global-setup.ts"],
          testTimeout: 30_000,
        },
      },
    ],
  },
});
