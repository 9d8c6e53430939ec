import { encodeFrame, FrameDecoder, MAX_CLIENT_FRAME_BYTES, MAX_HANDSHAKE_BYTES, parseFrameJson } from "../../../protocol/framing";

function drain(decoder: FrameDecoder): unknown[] {
  const out: unknown[] = [];
  for (let f = decoder.next(); f !== null; f = decoder.next()) out.push(parseFrameJson(f));
  return out;
}

describe("framing", () => {
  it("writes a 4-byte big-endian length before the UTF-8 JSON body", () => {
    const frame = encodeFrame({ a: "é" });
    const body = Buffer.from('{"a":"é"}');
    expect(frame.readUInt32BE(0)).toBe(body.length);
    expect(frame.subarray(4)).toEqual(body);
  });

  it("reassembles a multi-byte frame split at every byte boundary", () => {
    const value = { topic: "t", payload: { text: "ünïcødé ✓".repeat(50) } };
    const frame = encodeFrame(value);
    for (let split = 0; split <= frame.length; split++) {
      const d = new FrameDecoder(MAX_CLIENT_FRAME_BYTES);
      d.push(frame.subarray(0, split));
      const first = drain(d);
      d.push(frame.subarray(split));
      expect([...first, ...drain(d)]).toEqual([value]);
    }
  });

  it("returns every frame when several arrive in one chunk, one byte at a time, or mixed", () => {
    const frames = [encodeFrame({ n: 1 }), encodeFrame({ n: 2 }), encodeFrame({ n: 3 })];
    const all = Buffer.concat(frames);
    const d = new FrameDecoder(100);
    d.push(all);
    expect(drain(d)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    const bytewise = new FrameDecoder(100);
    const got: unknown[] = [];
    for (const byte of all) {
      bytewise.push(Buffer.from([byte]));
      got.push(...drain(bytewise));
    }
    expect(got).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    expect(bytewise.pendingBytes).toBe(0);
  });

  it("refuses a length prefix over the limit as soon as the prefix is complete", () => {
    const d = new FrameDecoder(MAX_CLIENT_FRAME_BYTES);
    d.push(Buffer.from([0xff, 0xff, 0xff, 0xf0]));
    expect(() => d.next()).toThrow(expect.objectContaining({ code: "ASTRID_ERR_FRAME_TOO_LARGE" }));
  });

  it("applies a new limit to the frames after the current one (handshake 4 KiB, then 10 MiB)", () => {
    const big = { blob: "x".repeat(MAX_HANDSHAKE_BYTES) };
    const d = new FrameDecoder(MAX_HANDSHAKE_BYTES);
    d.push(Buffer.concat([encodeFrame({ hs: 1 }), encodeFrame(big)]));
    expect(parseFrameJson(d.next()!)).toEqual({ hs: 1 });
    expect(() => d.next()).toThrow(expect.objectContaining({ code: "ASTRID_ERR_FRAME_TOO_LARGE" }));
    d.setLimit(MAX_CLIENT_FRAME_BYTES);
    expect(parseFrameJson(d.next()!)).toEqual(big);
  });

  it("reports a body that is not JSON with its code", () => {
    expect(() => parseFrameJson(Buffer.from("not json"))).toThrow(expect.objectContaining({ code: "ASTRID_ERR_FRAME_INVALID_JSON" }));
  });
});
