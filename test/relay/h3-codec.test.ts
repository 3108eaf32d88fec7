// HTTP/3 framing, QUIC varints and QPACK (static table only) against the
// RFCs' own examples: RFC 9000 Appendix A.1 (varints), RFC 7541 Appendix C
// (Huffman-coded strings, which QPACK reuses), RFC 9204 Appendix B.1 (a
// field section with a static name reference). The dynamic-table examples
// of RFC 9204 Appendix B are refused, since we advertise no table.

import { describe, expect, it } from "vitest";
import {
  encodeFrame,
  encodeVarints,
  FrameReader,
  H3_ERROR,
  H3FrameError,
  parseSettings,
  readVarint,
} from "../../relay/src/transports/h3/frames.ts";
import {
  decodeFieldSection,
  encodeFieldSection,
  huffmanDecode,
} from "../../relay/src/transports/h3/qpack.ts";

const hex = (text: string) => Uint8Array.from(Buffer.from(text.replace(/\s+/g, ""), "hex"));

function codeOf(run: () => unknown): number | undefined {
  try {
    run();
  } catch (error) {
    return error instanceof H3FrameError ? error.code : -1;
  }
  return undefined;
}

describe("QUIC varints (RFC 9000 A.1)", () => {
  it("reads the RFC's examples", () => {
    // 151288809941952652: past 2^53, so compared as the nearest double.
    expect(readVarint(hex("c2197c5eff14e88c"), 0)?.[0]).toBe(Number(151288809941952652n));
    expect(readVarint(hex("9d7f3e7d"), 0)).toEqual([494878333, 4]);
    expect(readVarint(hex("7bbd"), 0)).toEqual([15293, 2]);
    expect(readVarint(hex("25"), 0)).toEqual([37, 1]);
    expect(readVarint(hex("4025"), 0)).toEqual([37, 2]);
    expect(readVarint(hex("9d7f3e"), 0)).toBeUndefined();
  });

  it("writes the shortest form and reads it back at every length boundary", () => {
    for (const value of [0, 63, 64, 16383, 16384, 1073741823, 1073741824, 2 ** 40]) {
      const bytes = encodeVarints([value]);
      expect(bytes.length).toBe(value < 64 ? 1 : value < 16384 ? 2 : value < 2 ** 30 ? 4 : 8);
      expect(readVarint(bytes, 0)).toEqual([value, bytes.length]);
    }
    expect(Buffer.from(encodeVarints([15293])).toString("hex")).toBe("7bbd");
  });
});

describe("HTTP/3 frames", () => {
  it("cuts frames out of a stream however its bytes arrive", () => {
    const stream = new Uint8Array([
      ...encodeFrame(0x01, hex("0000d1")),
      ...encodeFrame(0x21, new Uint8Array(3)), // a reserved type, to be skipped by the caller
      ...encodeFrame(0x00, new Uint8Array(300).fill(7)),
    ]);
    const reader = new FrameReader();
    const frames = [];
    for (const byte of stream) frames.push(...reader.push(Uint8Array.of(byte)));
    expect(frames.map((f) => [f.type, f.payload.length])).toEqual([
      [0x01, 3],
      [0x21, 3],
      [0x00, 300],
    ]);
    expect(reader.pending).toBe(false);
    reader.push(hex("0005aa"));
    expect(reader.pending).toBe(true);
  });

  it("refuses a frame longer than its bound", () => {
    expect(codeOf(() => new FrameReader(100).push(hex("00 4065")))).toBe(H3_ERROR.excessiveLoad);
  });

  it("parses SETTINGS and refuses HTTP/2 identifiers and repeats", () => {
    expect([...parseSettings(encodeVarints([0x01, 0, 0x07, 0, 0x21, 5]))]).toEqual([
      [0x01, 0],
      [0x07, 0],
      [0x21, 5],
    ]);
    expect(codeOf(() => parseSettings(encodeVarints([0x04, 100])))).toBe(H3_ERROR.settingsError);
    expect(codeOf(() => parseSettings(encodeVarints([0x06, 1, 0x06, 2])))).toBe(
      H3_ERROR.settingsError,
    );
    expect(codeOf(() => parseSettings(hex("06")))).toBe(H3_ERROR.frameError);
  });
});

describe("Huffman strings (RFC 7541 Appendix C)", () => {
  it("decodes the RFC's examples", () => {
    const cases: [string, string][] = [
      ["f1e3c2e5f23a6ba0ab90f4ff", "www.example.com"],
      ["a8eb10649cbf", "no-cache"],
      ["25a849e95ba97d7f", "custom-key"],
      ["25a849e95bb8e8b4bf", "custom-value"],
      ["6402", "302"],
      ["aec3771a4b", "private"],
      ["d07abe941054d444a8200595040b8166e082a62d1bff", "Mon, 21 Oct 2013 20:13:21 GMT"],
      ["9d29ad171863c78f0b97c8e9ae82ae43d3", "https://www.example.com"],
    ];
    for (const [encoded, text] of cases) expect(huffmanDecode(hex(encoded))).toBe(text);
  });

  it("refuses padding that is not all ones, longer than 7 bits, or EOS inside", () => {
    const failed = H3_ERROR.qpackDecompressionFailed;
    expect(huffmanDecode(hex("641f"))).toBe("30"); // five bits of padding, all ones
    expect(codeOf(() => huffmanDecode(hex("641e")))).toBe(failed); // "30", then 11110
    expect(codeOf(() => huffmanDecode(hex("64 02 ff")))).toBe(failed); // a whole byte of padding
    expect(codeOf(() => huffmanDecode(hex("ffffffff")))).toBe(failed); // EOS
  });
});

describe("QPACK field sections, static table only", () => {
  it("decodes RFC 9204 B.1 (a literal with a static name reference)", () => {
    expect(decodeFieldSection(hex("0000 510b 2f69 6e64 6578 2e68 746d 6c"))).toEqual([
      [":path", "/index.html"],
    ]);
  });

  it("refuses the dynamic-table examples of RFC 9204 B.2 and B.4", () => {
    const failed = H3_ERROR.qpackDecompressionFailed;
    expect(codeOf(() => decodeFieldSection(hex("0381 10 11")))).toBe(failed);
    expect(codeOf(() => decodeFieldSection(hex("0500 80 c1 81")))).toBe(failed);
    // Required Insert Count 0 but a dynamic (T=0) reference.
    expect(codeOf(() => decodeFieldSection(hex("0000 81")))).toBe(failed);
  });

  it("encodes a DoH request with static references and literals, and reads it back", () => {
    const fields: [string, string][] = [
      [":method", "POST"],
      [":scheme", "https"],
      [":authority", "dns.example:8443"],
      [":path", "/dns-query"],
      ["accept", "application/dns-message"],
      ["content-type", "application/dns-message"],
      ["content-length", "33"],
      ["x-custom", "yes"],
    ];
    const encoded = encodeFieldSection(fields);
    // Prefix 00 00; :method POST is static 20 (0xc0|20), :scheme https 23.
    expect(Buffer.from(encoded.subarray(0, 4)).toString("hex")).toBe("0000d4d7");
    expect(decodeFieldSection(encoded)).toEqual(fields);
  });

  it("decodes Huffman-coded literals, with a literal name too", () => {
    // content-type (static 44's name) = Huffman "no-cache"; then a Huffman
    // literal name "custom-key" = Huffman "custom-value" (RFC 7541 C.4 strings).
    const section = hex("0000 5f1d 86 a8eb10649cbf 2f01 25a849e95ba97d7f 89 25a849e95bb8e8b4bf");
    expect(decodeFieldSection(section)).toEqual([
      ["content-type", "no-cache"],
      ["custom-key", "custom-value"],
    ]);
  });

  it("refuses a field section past its size bound", () => {
    const big = encodeFieldSection([["x-big", "a".repeat(100)]]);
    expect(codeOf(() => decodeFieldSection(big, 64))).toBe(H3_ERROR.qpackDecompressionFailed);
  });
});
