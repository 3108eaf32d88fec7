// The one error type every DNS wire helper (and the codec) throws. Callers
// switch on `code`, never on the message text.

import { DohEdgeError } from "../errors.ts";

export type DnsWireErrorCode =
  | "short_message" // fewer than 12 bytes: no complete header
  | "too_large" // more than 65535 bytes
  | "truncated_name" // a name runs past the end of the message (or of its RDATA)
  | "label_too_long" // a label longer than 63 octets
  | "name_too_long" // a name longer than 255 octets in wire form
  | "pointer_loop" // a compression pointer that does not lead strictly backwards
  | "forward_pointer" // a compression pointer to a later offset
  | "bad_label_type" // label type 0x40 or 0x80 (RFC 6891 §5 / RFC 2673, not in use)
  | "truncated_record" // a question or record runs past the end of the message
  | "count_mismatch" // a section count larger than the records present
  | "bad_rdata" // RDATA too short for its type (e.g. an SOA)
  | "bad_opt" // malformed OPT pseudo-record (owner, options, more than one)
  | "no_question" // QDCOUNT is 0 where a question is required
  | "bad_argument" // a caller passed an out-of-range value (ID, RCODE, age, size)
  | "decode_failed" // the codec could not decode the message
  | "encode_failed" // the codec could not encode the packet
  | "malformed"; // anything else unexpected while reading bytes

export class DnsWireError extends DohEdgeError {
  override readonly name = "DnsWireError";
  readonly code: DnsWireErrorCode;
  /** Byte offset where the problem was found (-1 when it has no position). */
  readonly offset: number;

  constructor(code: DnsWireErrorCode, message: string, offset = -1, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.offset = offset;
  }
}

/**
 * Runs `fn` and lets only DnsWireError out: anything else (a RangeError from a
 * bug, say) becomes DnsWireError("malformed") so callers need one catch.
 */
export function guarded<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof DnsWireError) throw error;
    throw new DnsWireError(
      "malformed",
      `unexpected error reading DNS message: ${String(error)}`,
      -1,
      {
        cause: error,
      },
    );
  }
}
