import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeBase64Url, encodeBase64Url } from "../../shared/doh/base64url.ts";

describe("base64url", () => {
  it("encodes without padding using - and _", () => {
    expect(encodeBase64Url(Uint8Array.from([0xfb, 0xff]))).toBe("-_8");
    expect(encodeBase64Url(new TextEncoder().encode("hello"))).toBe("aGVsbG8");
  });

  it("decodes the RFC 8484 example query", () => {
    // RFC 8484 §4.1.1: www.example.com A, ID 0
    const bytes = decodeBase64Url("AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB");
    expect(bytes?.length).toBe(33);
    expect(new TextDecoder().decode(bytes!.subarray(13, 16))).toBe("www");
  });

  it("accepts padded input as the same bytes", () => {
    expect(decodeBase64Url("aGVsbG8=")).toEqual(decodeBase64Url("aGVsbG8"));
  });

  it("rejects characters outside the alphabet and impossible lengths", () => {
    expect(decodeBase64Url("aGV+bG8")).toBeUndefined();
    expect(decodeBase64Url("aGV/bG8")).toBeUndefined();
    expect(decodeBase64Url("a")).toBeUndefined();
    expect(decodeBase64Url("aGVsbG8 ")).toBeUndefined();
    expect(decodeBase64Url("é")).toBeUndefined();
  });

  it("rejects non-canonical trailing bits", () => {
    expect(decodeBase64Url("aGVsbG9")).toBeUndefined();
  });

  it("round-trips any bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        expect(decodeBase64Url(encodeBase64Url(bytes))).toEqual(bytes);
      }),
    );
  });
});
