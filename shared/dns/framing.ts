// RFC 1035 §4.2.2 / RFC 7858 / RFC 9250 two-byte length framing, shared by
// TCP, DoT and DoQ on both runtimes.

import { copyBytes, plainBytes } from "./bytes.ts";

const newBytes = (size: number) => new Uint8Array(size);
/** Nothing held: shared, since nothing is ever written to it. */
const NOTHING = new Uint8Array(0);

/**
 * `message` behind its 2-byte length; with `id`, that message ID in place of
 * its own. `alloc` gives the output bytes (the relay passes Node's pooled
 * allocator, so a query costs no fresh ArrayBuffer).
 */
export function frameMessage(
  message: Uint8Array,
  id?: number,
  alloc: (size: number) => Uint8Array = newBytes,
): Uint8Array {
  if (message.length > 0xffff) throw new RangeError("DNS message longer than 65535 bytes");
  const out = alloc(message.length + 2);
  out[0] = message.length >> 8;
  out[1] = message.length & 0xff;
  out.set(message, 2);
  if (id !== undefined && message.length >= 2) {
    out[2] = id >> 8;
    out[3] = id & 0xff;
  }
  return out;
}

export interface FrameReader {
  /**
   * Feeds bytes; returns every message completed by them, in order. The
   * messages are plain Uint8Array views of `chunk` (or of the reader's own
   * buffer), never Node Buffers, each over its own bytes: the caller owns
   * them, may keep or change them, and must not reuse `chunk`'s memory.
   */
  push(chunk: Uint8Array): Uint8Array[];
  /** Bytes held for an incomplete message. */
  readonly buffered: number;
}

/**
 * Incremental de-framer. A zero-length frame is returned as an empty message
 * so the caller can decide (usually: close the connection). The 16-bit length
 * bounds what one peer can make us hold to one message.
 */
export function createFrameReader(): FrameReader {
  let pending = NOTHING;
  return {
    get buffered() {
      return pending.length;
    },
    push(chunk) {
      let data: Uint8Array;
      if (pending.length === 0) data = plainBytes(chunk);
      else {
        data = new Uint8Array(pending.length + chunk.length);
        data.set(pending, 0);
        data.set(chunk, pending.length);
      }
      const messages: Uint8Array[] = [];
      let offset = 0;
      while (data.length - offset >= 2) {
        const size = (data[offset]! << 8) | data[offset + 1]!;
        if (data.length - offset - 2 < size) break;
        messages.push(data.subarray(offset + 2, offset + 2 + size));
        offset += 2 + size;
      }
      pending = offset === data.length ? NOTHING : copyBytes(data.subarray(offset));
      return messages;
    },
  };
}
