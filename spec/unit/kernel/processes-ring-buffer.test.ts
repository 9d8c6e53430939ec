/** The output ring buffer: keeps the last `capacity` bytes, counts what it dropped, never splits a character. */
import { RingBuffer } from "../../../kernel/processes/ring-buffer";

describe("RingBuffer", () => {
  it("keeps everything under the capacity", () => {
    const b = new RingBuffer(10);
    b.write(Buffer.from("abc"));
    b.write(Buffer.from("def"));
    expect(b.text()).toBe("abcdef");
    expect(b.truncated).toBe(false);
    expect(b.length).toBe(6);
  });

  it("keeps the tail when filled past the capacity, in small and large chunks", () => {
    const b = new RingBuffer(10);
    for (const c of "0123456789abcdef") b.write(Buffer.from(c));
    expect(b.text()).toBe("6789abcdef");
    expect(b.dropped).toBe(6);
    b.write(Buffer.from("XYZ"));
    expect(b.text()).toBe("9abcdefXYZ");
    b.write(Buffer.from("a".repeat(25) + "TAIL"));
    expect(b.text()).toBe("aaaaaaTAIL");
    expect(b.length).toBe(10);
    expect(b.dropped).toBe(6 + 3 + 29);
  });

  it("a chunk cut in the middle keeps its end", () => {
    const b = new RingBuffer(8);
    b.write(Buffer.from("12345"));
    b.write(Buffer.from("67890"));
    expect(b.text()).toBe("34567890");
  });

  it("does not show half a character at the cut", () => {
    const b = new RingBuffer(4);
    b.write(Buffer.from("xé€")); // 1 + 2 + 3 bytes: keeping 4 cuts é in half
    expect(b.truncated).toBe(true);
    expect(b.text()).toBe("€");
    const exact = new RingBuffer(3);
    exact.write(Buffer.from("a€"));
    expect(exact.text()).toBe("€");
  });

  it("fills 1 MB from 64 KiB chunks and holds exactly 1 MB", () => {
    const b = new RingBuffer();
    for (let i = 0; i < 40; i++) b.write(Buffer.alloc(64 * 1024, i));
    expect(b.length).toBe(1024 * 1024);
    expect(b.bytes()[0]).toBe(24);
    expect(b.bytes().at(-1)).toBe(39);
    expect(b.dropped).toBe(24 * 64 * 1024);
  });

  it("refuses a capacity that is not a positive whole number", () => {
    expect(() => new RingBuffer(0)).toThrow(RangeError);
    expect(() => new RingBuffer(1.5)).toThrow(RangeError);
  });
});
