// Who owns a DNS message's bytes, and the one way to copy them.
//
// Node's Buffer is a Uint8Array whose slice() returns a view of the same
// memory, not a copy; bytes read from Node sockets arrive as Buffers. So
// shared/ never copies with slice() (test/tools/check-byte-copies.mjs fails
// the lint when it does): it copies with copyBytes, a real copy in every
// runtime, and a transport hands over plain Uint8Arrays (plainBytes).

/** A copy of `bytes` in fresh memory, always a plain Uint8Array (never a Node Buffer). */
export function copyBytes(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(bytes.length);
  out.set(bytes);
  return out;
}

/**
 * The same memory as a plain Uint8Array (no copy): for bytes the caller
 * alone holds, such as a received Node Buffer, so that later copies of them
 * are real copies.
 */
export function plainBytes(bytes: Uint8Array): Uint8Array {
  return Object.getPrototypeOf(bytes) === Uint8Array.prototype
    ? bytes
    : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
