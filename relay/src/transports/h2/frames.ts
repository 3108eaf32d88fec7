// HTTP/2 framing (RFC 9113 §4, §6): the frame types and flags a DoH client
// uses, writing frames into one buffer, and reading them off a byte stream
// that splits and joins them anywhere.

import { Buffer } from "node:buffer";

export const FRAME = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const FLAG = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

export const SETTING = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
} as const;

/** Error codes (RFC 9113 §7). */
export const H2_ERROR = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  FLOW_CONTROL_ERROR: 0x3,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  FRAME_SIZE_ERROR: 0x6,
} as const;

export const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
export const HEADER_SIZE = 9;
/** SETTINGS_MAX_FRAME_SIZE's initial value: the largest frame either side may send unasked. */
export const DEFAULT_MAX_FRAME = 16_384;

/** Writes a frame header at `at` in `out`; the payload follows it. */
export function writeFrameHeader(
  out: Uint8Array,
  at: number,
  length: number,
  type: number,
  flags: number,
  stream: number,
) {
  out[at] = length >>> 16;
  out[at + 1] = (length >>> 8) & 0xff;
  out[at + 2] = length & 0xff;
  out[at + 3] = type;
  out[at + 4] = flags;
  out[at + 5] = (stream >>> 24) & 0x7f;
  out[at + 6] = (stream >>> 16) & 0xff;
  out[at + 7] = (stream >>> 8) & 0xff;
  out[at + 8] = stream & 0xff;
}

/** One whole frame with `payload`. */
export function frame(type: number, flags: number, stream: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_SIZE + payload.length);
  writeFrameHeader(out, 0, payload.length, type, flags, stream);
  out.set(payload, HEADER_SIZE);
  return out;
}

export function readUint32(bytes: Uint8Array, at: number): number {
  return (
    ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0
  );
}

export function uint32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  out[0] = value >>> 24;
  out[1] = (value >>> 16) & 0xff;
  out[2] = (value >>> 8) & 0xff;
  out[3] = value & 0xff;
  return out;
}

export type FrameHandler = (
  type: number,
  flags: number,
  stream: number,
  payload: Uint8Array,
) => void;

export class FrameSizeError extends Error {}

/**
 * Feeds socket chunks in; calls `handle` once per whole frame, with the
 * payload as a view of the chunk (or of a joined copy when the frame spans
 * chunks). Frames larger than `maxFrame` throw FrameSizeError.
 */
export function createFrameReader(maxFrame: number, handle: FrameHandler) {
  let rest: Buffer | undefined;
  return (chunk: Buffer) => {
    const input = rest ? Buffer.concat([rest, chunk]) : chunk;
    rest = undefined;
    let at = 0;
    while (input.length - at >= HEADER_SIZE) {
      const length = (input[at]! << 16) | (input[at + 1]! << 8) | input[at + 2]!;
      if (length > maxFrame) throw new FrameSizeError(`frame of ${length} bytes`);
      if (input.length - at < HEADER_SIZE + length) break;
      const type = input[at + 3]!;
      const flags = input[at + 4]!;
      const stream = readUint32(input, at + 5) & 0x7fffffff;
      const start = at + HEADER_SIZE;
      at = start + length;
      handle(type, flags, stream, input.subarray(start, at));
    }
    if (at < input.length) rest = input.subarray(at);
  };
}

/** HEADERS, plus CONTINUATION frames when the block is larger than the peer's frame size. */
export function headerFrames(
  id: number,
  block: Uint8Array,
  endStream: boolean,
  maxFrame: number,
): Buffer[] {
  const flags = endStream ? FLAG.END_STREAM : 0;
  const frames: Buffer[] = [];
  for (let at = 0; at === 0 || at < block.length; at += maxFrame) {
    const last = at + maxFrame >= block.length ? FLAG.END_HEADERS : 0;
    const type = at === 0 ? FRAME.HEADERS : FRAME.CONTINUATION;
    frames.push(frame(type, (at === 0 ? flags : 0) | last, id, block.subarray(at, at + maxFrame)));
  }
  return frames;
}

/** The payload without its padding (PADDED flag) and `skip` more bytes, or undefined when the padding overruns it. */
export function unpadded(flags: number, payload: Uint8Array, skip = 0): Uint8Array | undefined {
  if ((flags & FLAG.PADDED) === 0) return payload.subarray(skip);
  const pad = payload[0] ?? 0;
  if (payload.length < 1 + skip + pad) return undefined;
  return payload.subarray(1 + skip, payload.length - pad);
}

/** HEADERS (END_HEADERS) and one DATA frame (END_STREAM) carrying all of `body`, in one buffer. */
export function requestFrames(id: number, block: Uint8Array, body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(2 * HEADER_SIZE + block.length + body.length);
  writeFrameHeader(out, 0, block.length, FRAME.HEADERS, FLAG.END_HEADERS, id);
  out.set(block, HEADER_SIZE);
  const data = HEADER_SIZE + block.length;
  writeFrameHeader(out, data, body.length, FRAME.DATA, FLAG.END_STREAM, id);
  out.set(body, data + HEADER_SIZE);
  return out;
}
