// Which responses count as answers, which end a race, and which held answer
// is best once every attempt has ended. Raw bytes only, no decoding.

import { Rcode, readHeader, readRcode, sameQuestion } from "../dns/wire.ts";
import { UpstreamError } from "./errors.ts";

export type WinnerMode = "first_positive" | "race" | "race_continue_on_error";

export function winnerMode(race: boolean, raceContinueOnError: boolean): WinnerMode {
  if (!race) return "first_positive";
  return raceContinueOnError ? "race_continue_on_error" : "race";
}

/** Whether a valid response with this RCODE ends the query at once. */
export function endsRace(rcode: number, mode: WinnerMode): boolean {
  if (rcode === Rcode.NOERROR) return true;
  if (mode === "race") return true;
  return mode === "race_continue_on_error" && rcode === Rcode.NXDOMAIN;
}

/**
 * Preference among held answers, lower is better: NXDOMAIN (a real answer
 * about the name), then other definite RCODEs (YXDOMAIN, NXRRSET, NOTAUTH,
 * BADVERS, ...), then SERVFAIL (may carry an EDE the client can use), NOTIMP,
 * FORMERR, and REFUSED last (says nothing about the name). NOERROR never
 * waits, but ranks first for completeness.
 */
export function answerRank(rcode: number): number {
  switch (rcode) {
    case Rcode.NOERROR:
      return 0;
    case Rcode.NXDOMAIN:
      return 1;
    case Rcode.SERVFAIL:
      return 3;
    case Rcode.NOTIMP:
      return 4;
    case Rcode.FORMERR:
      return 5;
    case Rcode.REFUSED:
      return 6;
    default:
      return 2;
  }
}

/**
 * The RCODE of `answer` when it is a valid response to `query` (whose ID is
 * `queryId`); an UpstreamError otherwise: malformed_answer (not a DNS
 * response), id_mismatch, question_mismatch. An error response without a
 * question section (FORMERR and friends may omit it) is accepted.
 */
export function checkAnswer(
  query: Uint8Array,
  queryId: number,
  answer: Uint8Array,
  upstream: string,
): number | UpstreamError {
  let rcode: number;
  let header: ReturnType<typeof readHeader>;
  try {
    header = readHeader(answer);
    if (!header.qr)
      return new UpstreamError("malformed_answer", upstream, `${upstream}: QR bit not set`);
    if (header.id !== queryId) {
      return new UpstreamError(
        "id_mismatch",
        upstream,
        `${upstream}: response ID ${header.id}, query ID ${queryId}`,
      );
    }
    rcode = readRcode(answer);
  } catch (error) {
    return new UpstreamError("malformed_answer", upstream, `${upstream}: ${String(error)}`, {
      cause: error,
    });
  }
  if (header.qdcount === 0 && rcode !== Rcode.NOERROR) return rcode;
  if (!sameQuestion(query, answer)) {
    return new UpstreamError(
      "question_mismatch",
      upstream,
      `${upstream}: response to another question`,
    );
  }
  return rcode;
}
