// Certificate checks quiche cannot make: BoringSSL's name check inside it
// matches DNS names only, so an IP-literal servername is checked here with
// node:crypto against the trusted CAs.

import { X509Certificate } from "node:crypto";

export function pemCertificates(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (block) => new X509Certificate(block),
  );
}

/** A DER chain checked against trusted roots and an IP address (what the library cannot do). */
export function verifyChainForIp(
  chain: readonly Uint8Array[],
  roots: readonly X509Certificate[],
  ip: string,
): boolean {
  try {
    const certs = chain.map((der) => new X509Certificate(der));
    const leaf = certs[0];
    if (!leaf?.checkIP(ip)) return false;
    const now = Date.now();
    let current = leaf;
    for (let depth = 0; depth <= certs.length; depth++) {
      if (now < Date.parse(current.validFrom) || now > Date.parse(current.validTo)) return false;
      const issuedBy = (c: X509Certificate) =>
        current.checkIssued(c) && current.verify(c.publicKey);
      if (roots.some(issuedBy)) return true;
      const next = certs.find((c) => c !== current && c.ca && issuedBy(c));
      if (!next) return false;
      current = next;
    }
    return false;
  } catch {
    return false;
  }
}
