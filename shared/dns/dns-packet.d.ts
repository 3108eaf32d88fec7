// Type shim for dns-packet inside shared/ (type-checked without Node types;
// see shared/tsconfig.json "paths"). Declares only what codec.ts uses, with
// Uint8Array where the real @types/dns-packet says Buffer, so code written
// against it type-checks against the real types too.

export interface Question {
  type: string;
  name: string;
  class?: string | undefined;
}

export interface PacketOpt {
  code: number;
  type?: string | undefined;
  data?: Uint8Array | undefined;
}

export interface Answer {
  type: string;
  name: string;
  ttl?: number | undefined;
  class?: string | undefined;
  flush?: boolean | undefined;
  data?: unknown;
  udpPayloadSize?: number;
  extendedRcode?: number;
  ednsVersion?: number;
  flags?: number;
  flag_do?: boolean;
  options?: PacketOpt[];
}

export interface Packet {
  type?: "query" | "response" | undefined;
  id?: number | undefined;
  flags?: number | undefined;
  questions?: Question[] | undefined;
  answers?: Answer[] | undefined;
  additionals?: Answer[] | undefined;
  authorities?: Answer[] | undefined;
}

export interface DecodedPacket extends Packet {
  flag_qr: boolean;
  flag_aa: boolean;
  flag_tc: boolean;
  flag_rd: boolean;
  flag_ra: boolean;
  flag_z: boolean;
  flag_ad: boolean;
  flag_cd: boolean;
}

export function encode(packet: Packet, buf?: Uint8Array, offset?: number): Uint8Array;
export declare namespace encode {
  let bytes: number;
}
export function decode(buf: Uint8Array, offset?: number): DecodedPacket;
export declare namespace decode {
  let bytes: number;
}

declare const dnsPacket: { encode: typeof encode; decode: typeof decode };
export default dnsPacket;
