// HTTP/3 framing (RFC 9114 §7) and QUIC variable-length integers (RFC 9000
// §16): what a DoH client needs, the frames it sends and a reader that cuts a
// stream's bytes into frames as they arrive. Unknown and reserved frame types
// are handed over like any other for the caller to skip (§9).

import { copyBytes } from "../../../../shared/dns/bytes.ts";

/** Frame types (RFC 9114 §7.2). */
export const H3_FRAME = {
  data: 0x00,
  headers: 0x01,
  cancelPush: 0x03,
  settings: 0x04,
  pushPromise: 0x05,
  goaway: 0x07,
  maxPushId: 0x0d,
} as const;

/** Unidirectional stream types (RFC 9114 §6.2, RFC 9204 §4.2). */
export const H3_STREAM = {
  control: 0x00,
  push: 0x01,
  qpackEncoder: 0x02,
  qpackDecoder: 0x03,
} as const;

/** Settings we send (RFC 9204 §5): no dynamic table, so no blocked streams. */
export const H3_SETTING = {
  qpackMaxTableCapacity: 0x01,
  maxFieldSectionSize: 0x06,
  qpackBlockedStreams: 0x07,
} as const;

/** Error codes (RFC 9114 §8.1, RFC 9204 §6). */
export const H3_ERROR = {
  noError: 0x100,
  generalProtocolError: 0x101,
  internalError: 0x102,
  streamCreationError: 0x103,
  closedCriticalStream: 0x104,
  frameUnexpected: 0x105,
  frameError: 0x106,
  excessiveLoad: 0x107,
  idError: 0x108,
  settingsError: 0x109,
  missingSettings: 0x10a,
  requestRejected: 0x10b,
  requestCancelled: 0x10c,
  requestIncomplete: 0x10d,
  messageError: 0x10e,
  qpackDecompressionFailed: 0x200,
} as const;

export class H3FrameError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.name = "H3FrameError";
    this.code = code;
  }
}

/** The encoded length of a varint (up to 2^62 - 1; DNS needs far less). */
export function varintLength(value: number): number {
  if (value < 0x40) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x40000000) return 4;
  return 8;
}

/** Writes `value` as a varint at `offset`; returns the offset after it. */
export function writeVarint(out: Uint8Array, offset: number, value: number): number {
  const length = varintLength(value);
  if (length === 8) {
    const view = new DataView(out.buffer, out.byteOffset + offset, 8);
    view.setBigUint64(0, BigInt(value) | (0b11n << 62n));
    return offset + 8;
  }
  const prefix = [0x00, 0x40, 0, 0x80][length - 1] ?? 0;
  for (let i = length - 1; i >= 0; i--) {
    out[offset + i] = i === 0 ? (value & 0x3f) | prefix : value & 0xff;
    value = Math.floor(value / 256);
  }
  return offset + length;
}

/**
 * Reads a varint at `offset`: [value, offset after it], or undefined when the
 * bytes end first. Values past 2^53 lose precision; none we act on come near.
 */
export function readVarint(bytes: Uint8Array, offset: number): [number, number] | undefined {
  if (offset >= bytes.length) return undefined;
  const first = bytes[offset] as number;
  const length = 1 << (first >> 6);
  if (offset + length > bytes.length) return undefined;
  let value = first & 0x3f;
  for (let i = 1; i < length; i++) value = value * 256 + (bytes[offset + i] as number);
  return [value, offset + length];
}

/** One frame: type, length, payload. */
export function encodeFrame(type: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(varintLength(type) + varintLength(payload.length) + payload.length);
  let at = writeVarint(out, 0, type);
  at = writeVarint(out, at, payload.length);
  out.set(payload, at);
  return out;
}

/** Varints back to back (SETTINGS payloads, stream-type prefixes). */
export function encodeVarints(values: readonly number[]): Uint8Array {
  const out = new Uint8Array(values.reduce((n, v) => n + varintLength(v), 0));
  let at = 0;
  for (const value of values) at = writeVarint(out, at, value);
  return out;
}

/** A SETTINGS payload as [identifier, value] pairs (RFC 9114 §7.2.4). */
export function parseSettings(payload: Uint8Array): Map<number, number> {
  const settings = new Map<number, number>();
  let at = 0;
  while (at < payload.length) {
    const id = readVarint(payload, at);
    const value = id && readVarint(payload, id[1]);
    if (!id || !value) throw new H3FrameError(H3_ERROR.frameError, "truncated SETTINGS");
    if (settings.has(id[0])) throw new H3FrameError(H3_ERROR.settingsError, "repeated setting");
    // HTTP/2 setting identifiers are reserved in HTTP/3 (§7.2.4.1).
    if (id[0] >= 0x02 && id[0] <= 0x05)
      throw new H3FrameError(H3_ERROR.settingsError, `HTTP/2 setting 0x${id[0].toString(16)}`);
    settings.set(id[0], value[0]);
    at = value[1];
  }
  return settings;
}

const EMPTY = new Uint8Array(0);

export interface H3Frame {
  type: number;
  /** Our own copy of the payload. */
  payload: Uint8Array;
}

/**
 * Cuts a stream into frames as bytes arrive. `maxPayload` bounds any one
 * frame (a DNS answer is at most 65,535 bytes; headers are small).
 */
export class FrameReader {
  private buffered: Uint8Array = EMPTY;
  private readonly maxPayload: number;

  constructor(maxPayload = 70_000) {
    this.maxPayload = maxPayload;
  }

  /** Whether bytes of an unfinished frame are held (a FIN now would cut a frame short). */
  get pending(): boolean {
    return this.buffered.length > 0;
  }

  push(data: Uint8Array): H3Frame[] {
    let bytes = data;
    if (this.buffered.length > 0) {
      bytes = new Uint8Array(this.buffered.length + data.length);
      bytes.set(this.buffered);
      bytes.set(data, this.buffered.length);
    }
    const frames: H3Frame[] = [];
    let at = 0;
    for (;;) {
      const type = readVarint(bytes, at);
      const length = type && readVarint(bytes, type[1]);
      if (!type || !length) break;
      if (length[0] > this.maxPayload)
        throw new H3FrameError(H3_ERROR.excessiveLoad, `frame of ${length[0]} bytes`);
      const end = length[1] + length[0];
      if (end > bytes.length) break;
      frames.push({ type: type[0], payload: copyBytes(bytes.subarray(length[1], end)) });
      at = end;
    }
    this.buffered = at === bytes.length ? EMPTY : copyBytes(bytes.subarray(at));
    return frames;
  }
}
