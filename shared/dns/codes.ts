// DNS code points: RCODEs, RR types, Extended DNS Error info-codes.

export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  YXDOMAIN: 6,
  YXRRSET: 7,
  NXRRSET: 8,
  NOTAUTH: 9,
  NOTZONE: 10,
  BADVERS: 16,
} as const;
export type RcodeName = keyof typeof Rcode;

const RCODE_NAMES = new Map<number, string>(
  Object.entries(Rcode).map(([name, code]) => [code, name]),
);

/** "NOERROR", "SERVFAIL", …; the number as text for codes without a name. */
export function rcodeText(rcode: number): string {
  return RCODE_NAMES.get(rcode) ?? String(rcode);
}

export const RrType = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  DS: 43,
  RRSIG: 46,
  DNSKEY: 48,
  HTTPS: 65,
  SVCB: 64,
  OPT: 41,
  ANY: 255,
} as const;

/** RFC 8914 §5.2 info-codes. */
export const EdeCode = {
  OTHER: 0,
  UNSUPPORTED_DNSKEY_ALGORITHM: 1,
  UNSUPPORTED_DS_DIGEST_TYPE: 2,
  STALE_ANSWER: 3,
  FORGED_ANSWER: 4,
  DNSSEC_INDETERMINATE: 5,
  DNSSEC_BOGUS: 6,
  SIGNATURE_EXPIRED: 7,
  SIGNATURE_NOT_YET_VALID: 8,
  DNSKEY_MISSING: 9,
  RRSIGS_MISSING: 10,
  NO_ZONE_KEY_BIT_SET: 11,
  NSEC_MISSING: 12,
  CACHED_ERROR: 13,
  NOT_READY: 14,
  BLOCKED: 15,
  CENSORED: 16,
  FILTERED: 17,
  PROHIBITED: 18,
  STALE_NXDOMAIN_ANSWER: 19,
  NOT_AUTHORITATIVE: 20,
  NOT_SUPPORTED: 21,
  NO_REACHABLE_AUTHORITY: 22,
  NETWORK_ERROR: 23,
  INVALID_DATA: 24,
} as const;

/** The EDNS option code of Extended DNS Errors (RFC 8914). */
export const EDE_OPTION_CODE = 15;

// Mnemonics from the IANA "Resource Record (RR) TYPEs" registry, for
// presentation and for parsing user input (`type=CAA`).
const TYPE_NAMES: Readonly<Record<number, string>> = {
  1: "A",
  2: "NS",
  5: "CNAME",
  6: "SOA",
  10: "NULL",
  11: "WKS",
  12: "PTR",
  13: "HINFO",
  14: "MINFO",
  15: "MX",
  16: "TXT",
  17: "RP",
  18: "AFSDB",
  24: "SIG",
  25: "KEY",
  28: "AAAA",
  29: "LOC",
  33: "SRV",
  35: "NAPTR",
  36: "KX",
  37: "CERT",
  39: "DNAME",
  41: "OPT",
  42: "APL",
  43: "DS",
  44: "SSHFP",
  45: "IPSECKEY",
  46: "RRSIG",
  47: "NSEC",
  48: "DNSKEY",
  49: "DHCID",
  50: "NSEC3",
  51: "NSEC3PARAM",
  52: "TLSA",
  53: "SMIMEA",
  55: "HIP",
  59: "CDS",
  60: "CDNSKEY",
  61: "OPENPGPKEY",
  62: "CSYNC",
  63: "ZONEMD",
  64: "SVCB",
  65: "HTTPS",
  99: "SPF",
  108: "EUI48",
  109: "EUI64",
  249: "TKEY",
  250: "TSIG",
  251: "IXFR",
  252: "AXFR",
  255: "ANY",
  256: "URI",
  257: "CAA",
  32768: "TA",
  32769: "DLV",
};

const TYPE_NUMBERS: ReadonlyMap<string, number> = new Map(
  Object.entries(TYPE_NAMES).map(([n, name]) => [name, Number(n)]),
);

/** "A", "HTTPS", ... or the RFC 3597 generic form "TYPE65534" for unnamed types. */
export function rrTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `TYPE${type}`;
}

/** Case-insensitive mnemonic or "TYPEnnn" (0-65535) to the type number; undefined if neither. */
export function rrTypeFromName(name: string): number | undefined {
  const upper = name.toUpperCase();
  const known = TYPE_NUMBERS.get(upper);
  if (known !== undefined) return known;
  const generic = /^TYPE(\d{1,5})$/.exec(upper);
  if (!generic) return undefined;
  const n = Number(generic[1]);
  return n <= 0xffff ? n : undefined;
}
