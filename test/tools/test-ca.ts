// The test CA that workerd trusts, made with no root step: workerd verifies
// TLS against the system store plus the certificates in NODE_EXTRA_CA_CERTS
// (Miniflare reads that variable when it loads), so vitest.config.ts calls
// this before it loads the Workers plugin, and wrangler dev processes that
// tests start inherit it. The CA lives in node_modules/.cache (private to
// the clone) unless DOH_EDGE_TEST_CA_DIR names another folder.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const DEFAULT_DIR = fileURLToPath(
  new URL("../../node_modules/.cache/doh-edge-test-ca", import.meta.url),
);

/** Where the CA's `ca.pem` and `ca.key` are; created on first use. Sets the environment. */
export function ensureTestCa(): string {
  const dir = process.env.DOH_EDGE_TEST_CA_DIR ?? DEFAULT_DIR;
  const pem = join(dir, "ca.pem");
  const key = join(dir, "ca.key");
  if (!existsSync(pem) || !existsSync(key)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key,
        "-out",
        pem,
        "-days",
        "3650",
        "-subj",
        "/CN=doh-edge test CA",
      ],
      { stdio: "ignore" },
    );
  }
  process.env.DOH_EDGE_TEST_CA_DIR = dir;
  process.env.NODE_EXTRA_CA_CERTS = pem;
  return dir;
}
