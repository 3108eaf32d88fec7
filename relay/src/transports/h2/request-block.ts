// The HPACK blocks of DoH requests. Every field is a literal without
// indexing (so there is no encoder table to keep in step with the server),
// and the fields that never change on a session are encoded once: a POST's
// block is a cached prefix plus content-length, a GET's a prefix, the path
// and accept. Pseudo-header fields come first (RFC 9113 §8.3).

import { Buffer } from "node:buffer";
import type { DohRequest } from "../../../../shared/doh/doh-exchange.ts";
import { INDEXED, literalField, NAME } from "./hpack.ts";

const DNS_MESSAGE = "application/dns-message";

export function createRequestEncoder(authority: string): (request: DohRequest) => Buffer {
  const authorityField = literalField(NAME.authority, authority);
  const accept = literalField(NAME.accept, DNS_MESSAGE);
  const getHead = Buffer.concat([Buffer.from([INDEXED.get, INDEXED.https]), authorityField]);
  const postHeads = new Map<string, Buffer>();
  /** content-length fields by length: padded queries (RFC 8467) come in few lengths. */
  const lengths = new Map<number, Buffer>();
  const contentLength = (length: number) => {
    let field = lengths.get(length);
    if (!field) {
      field = literalField(NAME.contentLength, String(length));
      if (lengths.size < 256) lengths.set(length, field);
    }
    return field;
  };
  const postHead = (path: string) => {
    let head = postHeads.get(path);
    if (!head) {
      head = Buffer.concat([
        Buffer.from([INDEXED.post, INDEXED.https]),
        literalField(NAME.path, path),
        authorityField,
        literalField(NAME.contentType, DNS_MESSAGE),
        accept,
      ]);
      postHeads.set(path, head);
    }
    return head;
  };
  return (request) =>
    request.method === "GET"
      ? Buffer.concat([getHead, literalField(NAME.path, request.path), accept])
      : Buffer.concat([postHead(request.path), contentLength(request.body?.length ?? 0)]);
}
