import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createFrameReader, frameMessage } from "../../shared/dns/framing.ts";

describe("two-byte length framing", () => {
  it("prefixes the length in network order", () => {
    expect(frameMessage(new Uint8Array(258)).subarray(0, 2)).toEqual(Uint8Array.from([1, 2]));
  });

  it("puts another message ID on the wire when asked, into the bytes `alloc` gives", () => {
    const message = Uint8Array.from([0x12, 0x34, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let asked = 0;
    const framed = frameMessage(message, 0xbeef, (size) => {
      asked = size;
      return new Uint8Array(size);
    });
    expect(asked).toBe(14);
    expect([...framed.subarray(0, 6)]).toEqual([0, 12, 0xbe, 0xef, 1, 0]);
    expect([...message.subarray(0, 2)]).toEqual([0x12, 0x34]);
  });

  it("hands out messages the caller may change without touching the others", () => {
    const reader = createFrameReader();
    const [a, b] = reader.push(Uint8Array.from([0, 2, 1, 2, 0, 2, 3, 4]));
    a![0] = 99;
    expect([...b!]).toEqual([3, 4]);
    expect([...reader.push(Uint8Array.from([0, 1, 5]))[0]!]).toEqual([5]);
  });

  it("refuses a message longer than 65535 bytes", () => {
    expect(() => frameMessage(new Uint8Array(65536))).toThrow(RangeError);
  });

  it("reassembles messages split and joined at arbitrary points", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 20 }),
        (messages, cuts) => {
          const stream = Uint8Array.from(messages.flatMap((m) => [...frameMessage(m)]));
          const reader = createFrameReader();
          const out: Uint8Array[] = [];
          let offset = 0;
          let i = 0;
          while (offset < stream.length) {
            const size = cuts[i++ % cuts.length]!;
            out.push(...reader.push(stream.subarray(offset, offset + size)));
            offset += size;
          }
          expect(out).toEqual(messages);
          expect(reader.buffered).toBe(0);
        },
      ),
    );
  });

  it("holds an incomplete message until the rest arrives", () => {
    const reader = createFrameReader();
    expect(reader.push(Uint8Array.from([0, 3, 9]))).toEqual([]);
    expect(reader.buffered).toBe(3);
    expect(reader.push(Uint8Array.from([8, 7]))).toEqual([Uint8Array.from([9, 8, 7])]);
  });

  it("returns a zero-length frame as an empty message", () => {
    expect(createFrameReader().push(Uint8Array.from([0, 0]))).toEqual([new Uint8Array(0)]);
  });
});
