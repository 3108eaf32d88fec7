#!/usr/bin/env bash
# Creates this machine's doh-edge test CA (once) and adds it to the system
# trust store, so workerd — which verifies TLS against the system store —
# can reach the tests' TLS servers on loopback. Tests sign their server
# certificates with it. Needs root; run by .ci/run.
set -euo pipefail
dir=${DOH_EDGE_TEST_CA_DIR:-/var/lib/doh-edge-test-ca}
if [ ! -f "$dir/ca.pem" ] || [ ! -f "$dir/ca.key" ]; then
  mkdir -p "$dir"
  chmod 700 "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 3650 \
    -subj "/CN=doh-edge test CA $(hostname)" 2>/dev/null
fi
if ! cmp -s "$dir/ca.pem" /usr/local/share/ca-certificates/doh-edge-test-ca.crt; then
  cp "$dir/ca.pem" /usr/local/share/ca-certificates/doh-edge-test-ca.crt
  update-ca-certificates >/dev/null
fi
echo "doh-edge test CA: $dir/ca.pem (trusted by the system store)"
