// The HTTP/3 connection logic on its own, against a recording stand-in for
// the QUIC link: what a server may not do and the connection error each
// earns (RFC 9114 §6.2.1, §7.2, §8.1), GOAWAY bookkeeping, and responses cut
// at any byte. The same code against a real server (quic-go) is in
// doh3-transport.test.ts; these are the violations quic-go never commits.

import { describe, expect, it } from "vitest";
import { H3Connection, NOT_PROCESSED } from "../../relay/src/transports/h3/connection.ts";
import {
  encodeFrame,
  encodeVarints,
  H3_ERROR,
  H3_FRAME,
} from "../../relay/src/transports/h3/frames.ts";
import { encodeFieldSection } from "../../relay/src/transports/h3/qpack.ts";
import type { QuicheLink } from "../../relay/src/transports/quiche-link.ts";
import { UpstreamError } from "../../shared/engine/errors.ts";

function setup() {
  const writes: { streamId: number; data: Uint8Array; fin: boolean }[] = [];
  const cancelled: [number, number][] = [];
  const closes: number[] = [];
  const link = {
    write: (streamId: number, data: Uint8Array, fin: boolean) =>
      writes.push({ streamId, data, fin }),
    cancelStream: (streamId: number, code: number) => cancelled.push([streamId, code]),
    close: (code: number) => closes.push(code),
    conn: { peerStreamsLeftBidi: () => 100 },
  } as unknown as QuicheLink;
  const h3 = new H3Connection("h3", link);
  return { h3, writes, cancelled, closes };
}

const SETTINGS = encodeFrame(H3_FRAME.settings, encodeVarints([0x06, 16_384]));
const concat = (...parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => [...p]));
/** The server's control stream (ID 3): type 0x00, then frames. */
const control = (...frames: Uint8Array[]) => concat(Uint8Array.of(0x00), ...frames);
const goaway = (id: number) => encodeFrame(H3_FRAME.goaway, encodeVarints([id]));
const headers = (fields: [string, string][]) =>
  encodeFrame(H3_FRAME.headers, encodeFieldSection(fields));
const ok = headers([
  [":status", "200"],
  ["content-type", "application/dns-message"],
]);
const get = (h3: H3Connection) => h3.request([[":method", "GET"]], undefined);

async function failure(promise: Promise<unknown>): Promise<UpstreamError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(UpstreamError);
  return error as UpstreamError;
}

describe("HTTP/3 connection", () => {
  it("opens its control stream with SETTINGS: no QPACK table, no blocked streams, never finished", () => {
    const { h3, writes } = setup();
    h3.start();
    expect(writes).toEqual([
      {
        streamId: 2,
        data: Uint8Array.from([0x00, 0x04, 0x04, 0x01, 0x00, 0x07, 0x00]),
        fin: false,
      },
    ]);
  });

  it("sends each request on the next client stream, HEADERS then DATA, with FIN", () => {
    const { h3, writes } = setup();
    const first = h3.request([[":method", "POST"]], Uint8Array.of(1, 2, 3));
    const second = get(h3);
    expect([first.streamId, second.streamId]).toEqual([0, 4]);
    expect(Buffer.from(writes[0]?.data ?? []).toString("hex")).toBe("01030000d4" + "0003010203");
    expect(writes.map((w) => w.fin)).toEqual([true, true]);
  });

  it("takes a response cut at every byte, skipping 1xx, unknown frames and trailers", async () => {
    const { h3 } = setup();
    const { response } = get(h3);
    const bytes = concat(
      headers([[":status", "103"]]),
      ok,
      encodeFrame(0x21, Uint8Array.of(9)),
      encodeFrame(H3_FRAME.data, Uint8Array.of(1, 2)),
      encodeFrame(H3_FRAME.data, Uint8Array.of(3)),
      headers([["x-trailer", "1"]]),
    );
    bytes.forEach((byte, i) => {
      h3.onStreamData(0, Uint8Array.of(byte), i === bytes.length - 1);
    });
    const { status, body, fields } = await response;
    expect(status).toBe(200);
    expect([...body]).toEqual([1, 2, 3]);
    expect(fields).toContainEqual(["content-type", "application/dns-message"]);
  });

  it("closes with H3_MISSING_SETTINGS when the control stream starts otherwise, failing what is in flight", async () => {
    const { h3, closes } = setup();
    const { response } = get(h3);
    h3.onStreamData(3, control(goaway(0)), false);
    expect(closes).toEqual([H3_ERROR.missingSettings]);
    expect((await failure(response)).message).toMatch(/HTTP\/3 error 0x10a/);
    expect(h3.usable).toBe(false);
  });

  it("closes with H3_CLOSED_CRITICAL_STREAM when the server ends or resets its control stream", () => {
    const ended = setup();
    ended.h3.onStreamData(3, control(SETTINGS), true);
    expect(ended.closes).toEqual([H3_ERROR.closedCriticalStream]);
    const reset = setup();
    reset.h3.onStreamData(3, control(SETTINGS), false);
    reset.h3.onStreamReset(3, 0);
    expect(reset.closes).toEqual([H3_ERROR.closedCriticalStream]);
  });

  it("closes with the RFC's code for frames out of place", () => {
    const cases: [string, (h3: H3Connection) => void, number][] = [
      [
        "DATA before HEADERS",
        (h3) => h3.onStreamData(0, encodeFrame(0, Uint8Array.of(1)), false),
        H3_ERROR.frameUnexpected,
      ],
      [
        "PUSH_PROMISE without MAX_PUSH_ID",
        (h3) => h3.onStreamData(0, encodeFrame(5, Uint8Array.of(0)), false),
        H3_ERROR.idError,
      ],
      [
        "SETTINGS on a request stream",
        (h3) => h3.onStreamData(0, SETTINGS, false),
        H3_ERROR.frameUnexpected,
      ],
      [
        "a second SETTINGS",
        (h3) => h3.onStreamData(3, control(SETTINGS, SETTINGS), false),
        H3_ERROR.frameUnexpected,
      ],
      [
        "HEADERS on the control stream",
        (h3) => h3.onStreamData(3, control(SETTINGS, ok), false),
        H3_ERROR.frameUnexpected,
      ],
      [
        "an HTTP/2 frame type",
        (h3) => h3.onStreamData(3, control(SETTINGS, encodeFrame(0x08, Uint8Array.of())), false),
        H3_ERROR.frameUnexpected,
      ],
      [
        "a push stream",
        (h3) => h3.onStreamData(7, Uint8Array.of(0x01, 0x00), false),
        H3_ERROR.idError,
      ],
      [
        "a second control stream",
        (h3) => {
          h3.onStreamData(3, control(SETTINGS), false);
          h3.onStreamData(7, control(SETTINGS), false);
        },
        H3_ERROR.streamCreationError,
      ],
      [
        "a response that cuts a frame short",
        (h3) => h3.onStreamData(0, Uint8Array.of(0x00, 0x05, 0x01), true),
        H3_ERROR.frameError,
      ],
      [
        "a dynamic QPACK reference",
        (h3) => h3.onStreamData(0, encodeFrame(1, Uint8Array.of(0x02, 0x00, 0x80)), false),
        H3_ERROR.qpackDecompressionFailed,
      ],
    ];
    for (const [what, act, code] of cases) {
      const { h3, closes } = setup();
      get(h3).response.catch(() => {});
      act(h3);
      expect(closes, what).toEqual([code]);
    }
  });

  it("abandons unknown unidirectional streams and reads past QPACK streams, without closing", () => {
    const { h3, closes, cancelled } = setup();
    h3.onStreamData(7, Uint8Array.of(0x21, 0xff), false);
    h3.onStreamData(11, Uint8Array.of(0x02, 0x3f, 0xe1, 0x1f), false);
    h3.onStreamData(15, Uint8Array.of(0x03), false);
    expect(cancelled).toEqual([[7, H3_ERROR.streamCreationError]]);
    expect(closes).toEqual([]);
  });

  it("on GOAWAY, fails the requests at or past its ID as unprocessed, finishes the others, then closes", async () => {
    const { h3, closes, cancelled } = setup();
    let goaways = 0;
    h3.onGoaway = () => goaways++;
    const kept = get(h3);
    const dropped = get(h3);
    h3.onStreamData(3, control(SETTINGS, goaway(4)), false);
    expect(h3.usable).toBe(false);
    expect(goaways).toBe(1);
    expect((await failure(dropped.response)).cause).toBe(NOT_PROCESSED);
    expect(cancelled).toEqual([[4, H3_ERROR.requestCancelled]]);
    // A lower ID again is allowed; a higher one is not.
    h3.onStreamData(3, goaway(4), false);
    expect(closes).toEqual([]);
    h3.onStreamData(0, concat(ok, encodeFrame(0, Uint8Array.of(7))), true);
    expect((await kept.response).status).toBe(200);
    expect(closes).toEqual([H3_ERROR.noError]);
  });

  it("closes with H3_ID_ERROR on a GOAWAY that raises its ID or names no request stream", () => {
    const raised = setup();
    get(raised.h3).response.catch(() => {});
    raised.h3.onStreamData(3, control(SETTINGS, goaway(4), goaway(8)), false);
    expect(raised.closes).toEqual([H3_ERROR.idError]);
    const odd = setup();
    odd.h3.onStreamData(3, control(SETTINGS, goaway(3)), false);
    expect(odd.closes).toEqual([H3_ERROR.idError]);
  });

  it("treats a stream reset with H3_REQUEST_REJECTED as unprocessed, others as failed", async () => {
    const { h3 } = setup();
    const rejected = get(h3);
    const reset = get(h3);
    h3.onStreamReset(0, H3_ERROR.requestRejected);
    h3.onStreamReset(4, H3_ERROR.internalError);
    expect((await failure(rejected.response)).cause).toBe(NOT_PROCESSED);
    expect((await failure(reset.response)).cause).toBeUndefined();
  });
});
