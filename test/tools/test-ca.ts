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

/** A self-signed P-256 CA: its key and certificate written to `key` and `pem`. */
export function createCa(key: string, pem: string, name: string, days: number): void {
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
      String(days),
      "-subj",
      `/CN=${name}`,
    ],
    { stdio: "ignore" },
  );
}

/** Where the CA's `ca.pem` and `ca.key` are; created on first use. Sets the environment. */
export function ensureTestCa(): string {
  const dir = process.env.DOH_EDGE_TEST_CA_DIR ?? DEFAULT_DIR;
  const pem = join(dir, "ca.pem");
  const key = join(dir, "ca.key");
  if (!existsSync(pem) || !existsSync(key)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    createCa(key, pem, "doh-edge test CA", 3650);
  }
  process.env.DOH_EDGE_TEST_CA_DIR = dir;
  process.env.NODE_EXTRA_CA_CERTS = pem;
  return dir;
}
