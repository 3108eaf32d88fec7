// Full decode/encode of DNS messages, for work off the hot path (the JSON
// API, synthesised answers, tests). The only module that imports dns-packet;
// everything else reads bytes with wire.ts.

// biome-ignore lint/style/useNodejsImportProtocol: bare "buffer" is what shared/tsconfig.json maps to the type shim and what check-shared-runtime allows here
import { Buffer as NodeBuffer } from "buffer";
import dnsPacket from "dns-packet";
import { MAX_MESSAGE_SIZE, walkRecords } from "./message.ts";
import { DnsWireError } from "./wire-error.ts";

export interface DnsQuestion {
  name: string;
  /** "A", "AAAA", ...; "UNKNOWN_65" for types the codec does not know. */
  type: string;
  class?: string | undefined;
}

/** An EDNS option: `data` holds the raw bytes; some codes get decoded fields too. */
export interface DnsOption {
  code: number;
  type?: string | undefined;
  data?: Uint8Array | undefined;
  family?: number | undefined;
  sourcePrefixLength?: number | undefined;
  scopePrefixLength?: number | undefined;
  ip?: string | undefined;
  timeout?: number | undefined;
  length?: number | undefined;
  tags?: number[] | undefined;
}

export interface DnsRecord {
  name: string;
  type: string;
  class?: string | undefined;
  ttl?: number | undefined;
  flush?: boolean | undefined;
  /** Type-specific: a string (A, AAAA, CNAME, NS, PTR), Uint8Array[] (TXT), an object (MX, SOA, SRV, ...) or raw bytes. */
  data?: unknown;
  // The OPT pseudo-record only:
  udpPayloadSize?: number | undefined;
  extendedRcode?: number | undefined;
  ednsVersion?: number | undefined;
  /** OPT: the 16-bit EDNS flags word (DO = 0x8000). */
  flags?: number | undefined;
  flag_do?: boolean | undefined;
  options?: DnsOption[] | undefined;
}

/** A DNS message in dns-packet's object form. */
export interface DnsPacket {
  type?: "query" | "response" | undefined;
  id?: number | undefined;
  /** The header flags word without QR: opcode, AA, TC, RD, RA, Z, AD, CD and the 4-bit RCODE. */
  flags?: number | undefined;
  questions?: DnsQuestion[] | undefined;
  answers?: DnsRecord[] | undefined;
  authorities?: DnsRecord[] | undefined;
  additionals?: DnsRecord[] | undefined;
  // Filled in by decodeMessage:
  opcode?: string | undefined;
  rcode?: string | undefined;
  flag_qr?: boolean | undefined;
  flag_aa?: boolean | undefined;
  flag_tc?: boolean | undefined;
  flag_rd?: boolean | undefined;
  flag_ra?: boolean | undefined;
  flag_z?: boolean | undefined;
  flag_ad?: boolean | undefined;
  flag_cd?: boolean | undefined;
}

const describe = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * Decodes a whole message. The bytes are first validated by the wire walker,
 * and dns-packet must consume exactly the records the walker found, so this
 * accepts what wire.ts accepts. Throws DnsWireError("decode_failed") only.
 */
export function decodeMessage(bytes: Uint8Array): DnsPacket {
  let end: number;
  try {
    end = walkRecords(bytes).end;
  } catch (error) {
    const offset = error instanceof DnsWireError ? error.offset : -1;
    throw new DnsWireError(
      "decode_failed",
      `cannot decode DNS message: ${describe(error)}`,
      offset,
      {
        cause: error,
      },
    );
  }
  try {
    // dns-packet needs a Buffer and keeps slices of it: give it its own copy.
    const packet: DnsPacket = dnsPacket.decode(NodeBuffer.from(bytes));
    if (dnsPacket.decode.bytes !== end) {
      throw new Error(
        `RDATA lengths disagree with the record contents (${dnsPacket.decode.bytes} != ${end})`,
      );
    }
    return packet;
  } catch (error) {
    throw new DnsWireError("decode_failed", `cannot decode DNS message: ${describe(error)}`, -1, {
      cause: error,
    });
  }
}

// A deep copy for dns-packet, which fills in and rewrites its input and wants
// Buffers where we hold Uint8Arrays.
function toCodecInput(value: unknown, depth: number): unknown {
  if (depth > 16) throw new Error("packet nested too deeply");
  if (value instanceof Uint8Array) return NodeBuffer.from(value);
  if (Array.isArray(value)) return value.map((item) => toCodecInput(item, depth + 1));
  if (value !== null && typeof value === "object") {
    const copy: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) copy[key] = toCodecInput(item, depth + 1);
    return copy;
  }
  return value;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function isIpv6(text: string): boolean {
  if (!text.includes(":")) return false;
  try {
    new URL(`http://[${text}]/`); // the WHATWG URL parser validates IPv6 literals
    return true;
  } catch {
    return false;
  }
}

// dns-packet writes whatever an address string parses to, garbage included.
function checkAddresses(packet: DnsPacket): void {
  for (const list of [packet.answers, packet.authorities, packet.additionals]) {
    for (const r of list ?? []) {
      const bad =
        (r.type === "A" && !(typeof r.data === "string" && IPV4.test(r.data))) ||
        (r.type === "AAAA" && !(typeof r.data === "string" && isIpv6(r.data)));
      if (bad)
        throw new Error(`${r.type} record for ${r.name} has no valid address: ${String(r.data)}`);
    }
  }
}

/**
 * Encodes a packet (uncompressed names) and checks the result with the wire
 * walker, so a bad name (a label over 63 bytes, an empty label) or address
 * is an error rather than corrupt bytes. The input is not modified. Throws
 * DnsWireError("encode_failed") only.
 */
export function encodeMessage(packet: DnsPacket): Uint8Array<ArrayBuffer> {
  let out: Uint8Array<ArrayBuffer>;
  try {
    checkAddresses(packet);
    const input = toCodecInput(packet, 0) as Parameters<typeof dnsPacket.encode>[0];
    const encoded = dnsPacket.encode(input);
    // dns-packet allocates with Buffer.alloc: an ArrayBuffer, never shared.
    out = new Uint8Array(encoded.buffer as ArrayBuffer, encoded.byteOffset, encoded.length);
  } catch (error) {
    throw new DnsWireError("encode_failed", `cannot encode DNS message: ${describe(error)}`, -1, {
      cause: error,
    });
  }
  if (out.length > MAX_MESSAGE_SIZE) {
    throw new DnsWireError("encode_failed", `encoded message of ${out.length} bytes exceeds 65535`);
  }
  try {
    const { end } = walkRecords(out);
    if (end !== out.length) throw new Error(`${out.length - end} bytes after the last record`);
  } catch (error) {
    throw new DnsWireError(
      "encode_failed",
      `encoded message is malformed: ${describe(error)}`,
      -1,
      {
        cause: error,
      },
    );
  }
  return out;
}
