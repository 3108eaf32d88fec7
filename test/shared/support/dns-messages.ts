// Tiny hand-built DNS responses for engine tests (no codec needed).

import { buildQuery } from "../../../shared/dns/query.ts";
import { readQuestion } from "../../../shared/dns/wire.ts";

export { buildQuery };

export interface ResponseOptions {
  /** Override the response ID (default: the query's). */
  id?: number;
  /** Answer another question than the one asked. */
  name?: string;
  /** Add one A record (default: true for NOERROR). */
  withAnswer?: boolean;
  /** Leave the question section out (QDCOUNT 0), as some FORMERR responses do. */
  noQuestion?: boolean;
}

/** A response to `query` with `rcode`, echoing its question (EDNS dropped). */
export function respond(
  query: Uint8Array,
  rcode: number,
  options: ResponseOptions = {},
): Uint8Array {
  const questionEnd = readQuestion(query).end;
  let question = query.subarray(12, questionEnd);
  if (options.name !== undefined) {
    const other = buildQuery(options.name, readQuestion(query).type);
    question = other.subarray(12, readQuestion(other).end);
  }
  if (options.noQuestion) question = new Uint8Array(0);
  const withAnswer = options.withAnswer ?? rcode === 0;
  // owner = pointer to the question name, A IN, TTL 60, 192.0.2.1
  const record = withAnswer
    ? Uint8Array.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1])
    : new Uint8Array(0);
  const out = new Uint8Array(12 + question.length + record.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, options.id ?? (query[0]! << 8) | query[1]!);
  out[2] = 0x80 | (query[2]! & 0x79); // QR, opcode and RD kept
  out[3] = 0x80 | (rcode & 0xf); // RA
  view.setUint16(4, options.noQuestion ? 0 : 1);
  view.setUint16(6, withAnswer && !options.noQuestion ? 1 : 0);
  out.set(question, 12);
  if (!options.noQuestion) out.set(record, 12 + question.length);
  return options.noQuestion ? out.subarray(0, 12) : out;
}
