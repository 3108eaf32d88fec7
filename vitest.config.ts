import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// Two projects: every test runs in Node; the shared-core tests run a second
// time inside workerd to prove shared/ works in the Workers runtime.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "node",
          include: ["test/**/*.test.ts"],
          exclude: ["test/workerd/**"],
          testTimeout: 20_000,
        },
      },
      {
        plugins: [
          cloudflareTest({
            miniflare: {
              compatibilityDate: "2026-11-01",
              compatibilityFlags: ["nodejs_compat"],
            },
          }),
        ],
        test: {
          name: "workerd",
          include: ["test/shared/**/*.test.ts", "test/workerd/**/*.test.ts"],
          testTimeout: 20_000,
        },
      },
    ],
  },
});
