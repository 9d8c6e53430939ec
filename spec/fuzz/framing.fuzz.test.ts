/**
 * Fuzzing the frame decoder (protocol/framing.ts): arbitrary byte streams cut into arbitrary chunks behave exactly
 * like a one-pass reference decoder of the whole stream; valid frames round-trip however they are split; a bad
 * length prefix is always ASTRID_ERR_FRAME_TOO_LARGE and a bad body always ASTRID_ERR_FRAME_INVALID_JSON.
 */
import fc from "fast-check";
import { encodeFrame, FRAME_HEADER_BYTES, FrameDecoder, MAX_HANDSHAKE_BYTES, parseFrameJson } from "../../protocol/framing";
import { expectCoded, FUZZ_TIMEOUT_MS, hostileJson, returnsOrThrowsCoded, runs } from "./fuzz-helpers";

/** The reference: decode the whole stream in one pass. */
function referenceDecode(stream: Buffer, limit: number): { frames: Buffer[]; tooLarge: boolean; rest: number } {
  const frames: Buffer[] = [];
  let at = 0;
  while (stream.length - at >= FRAME_HEADER_BYTES) {
    const length = stream.readUInt32BE(at);
    if (length > limit) return { frames, tooLarge: true, rest: stream.length - at };
    if (stream.length - at - FRAME_HEADER_BYTES < length) break;
    frames.push(stream.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length));
    at += FRAME_HEADER_BYTES + length;
  }
  return { frames, tooLarge: false, rest: stream.length - at };
}

/** Cuts `stream` at the given (sorted, deduplicated) offsets. */
function cut(stream: Buffer, offsets: number[]): Buffer[] {
  const points = [...new Set(offsets.map((o) => o % (stream.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const p of [...points, stream.length]) {
    chunks.push(stream.subarray(from, p));
    from = p;
  }
  return chunks;
}

/** Feeds chunks, draining after each, as the socket server does; stops at the first refusal like it does. */
function feed(decoder: FrameDecoder, chunks: Buffer[]): { frames: Buffer[]; tooLarge: boolean } {
  const frames: Buffer[] = [];
  for (const chunk of chunks) {
    decoder.push(chunk);
    for (;;) {
      let frame: Buffer | null;
      try {
        frame = decoder.next();
      } catch (err) {
        expectCoded(err, ["ASTRID_ERR_FRAME_TOO_LARGE"]);
        return { frames, tooLarge: true };
      }
      if (frame === null) break;
      frames.push(Buffer.from(frame)); // the decoder may reuse its buffers; keep a copy
    }
  }
  return { frames, tooLarge: false };
}

/** A length prefix: small ones (so frames complete), ones near the limit, and huge ones. */
const prefix = (limit: number) =>
  fc.oneof(fc.integer({ min: 0, max: 24 }), fc.integer({ min: limit - 2, max: limit + 2 }), fc.integer({ min: 0, max: 0xffffffff }));

/** A stream that is mostly framed: segments of a plausible prefix then random bytes (shorter, exact or longer). */
const framedStream = (limit: number) =>
  fc
    .array(fc.tuple(prefix(limit), fc.uint8Array({ maxLength: 32 })), { maxLength: 6 })
    .map((parts) =>
      Buffer.concat(parts.map(([length, bytes]) => {
        const head = Buffer.alloc(4);
        head.writeUInt32BE(length >>> 0, 0);
        return Buffer.concat([head, Buffer.from(bytes)]);
      })),
    );

const anyStream = (limit: number) => fc.oneof(fc.uint8Array({ maxLength: 96 }).map((b) => Buffer.from(b)), framedStream(limit));
const offsets = fc.array(fc.nat(), { maxLength: 12 });
const limits = fc.constantFrom(0, 1, 16, MAX_HANDSHAKE_BYTES);

describe("fuzz: frame decoder", () => {
  it("any byte stream in any chunking decodes exactly like a one-pass reference", () => {
    fc.assert(
      fc.property(limits.chain((limit) => fc.tuple(fc.constant(limit), anyStream(limit), offsets)), ([limit, stream, at]) => {
        const decoder = new FrameDecoder(limit);
        const got = feed(decoder, cut(stream, at));
        const want = referenceDecode(stream, limit);
        expect(got.tooLarge).toBe(want.tooLarge);
        expect(got.frames).toEqual(want.frames);
        if (!want.tooLarge) {
          expect(decoder.pendingBytes).toBe(want.rest);
          expect(decoder.declaredLength).toBe(want.rest >= 4 ? stream.readUInt32BE(stream.length - want.rest) : null);
        }
      }),
      runs(400),
    );
  }, FUZZ_TIMEOUT_MS);

  it("valid frames round-trip whatever the chunking, and a bad prefix after them is refused after them", () => {
    fc.assert(
      fc.property(fc.array(hostileJson, { maxLength: 5 }), offsets, fc.boolean(), (values, at, poison) => {
        const frames = values.map((v) => encodeFrame(v));
        const tail = poison ? [Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2])] : [];
        const decoder = new FrameDecoder(1 << 20);
        const got = feed(decoder, cut(Buffer.concat([...frames, ...tail]), at));
        expect(got.tooLarge).toBe(poison);
        expect(got.frames.map((f) => parseFrameJson(f))).toEqual(values.map((v) => JSON.parse(JSON.stringify(v)) as unknown));
        if (!poison) expect(decoder.pendingBytes).toBe(0);
      }),
      runs(300),
    );
  }, FUZZ_TIMEOUT_MS);

  it("raising the limit between frames (handshake, then open) never loses or reorders bytes", () => {
    fc.assert(
      fc.property(hostileJson, fc.array(hostileJson, { maxLength: 3 }), offsets, (hello, rest, at) => {
        fc.pre(encodeFrame(hello).length - FRAME_HEADER_BYTES <= MAX_HANDSHAKE_BYTES);
        const stream = Buffer.concat([encodeFrame(hello), ...rest.map((v) => encodeFrame(v))]);
        const decoder = new FrameDecoder(MAX_HANDSHAKE_BYTES);
        const seen: unknown[] = [];
        for (const chunk of cut(stream, at)) {
          decoder.push(chunk);
          for (let f = decoder.next(); f !== null; f = decoder.next()) {
            seen.push(parseFrameJson(f));
            if (seen.length === 1) decoder.setLimit(1 << 20);
          }
        }
        expect(seen).toEqual([hello, ...rest].map((v) => JSON.parse(JSON.stringify(v)) as unknown));
      }),
      runs(200),
    );
  }, FUZZ_TIMEOUT_MS);

  it("parseFrameJson: any body parses or is ASTRID_ERR_FRAME_INVALID_JSON; only UTF-8 JSON parses", () => {
    const bodies = fc.oneof(
      fc.uint8Array({ maxLength: 48 }).map((b) => Buffer.from(b)),
      hostileJson.map((v) => Buffer.from(JSON.stringify(v) ?? "null")),
      // Valid JSON with one byte changed: breaks syntax or UTF-8 in the middle of a string.
      fc.tuple(hostileJson, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([v, i, byte]) => {
        const b = Buffer.from(JSON.stringify(v) ?? "null");
        b[i % b.length] = byte;
        return b;
      }),
    );
    fc.assert(
      fc.property(bodies, (body) => {
        const result = returnsOrThrowsCoded(() => parseFrameJson(body), ["ASTRID_ERR_FRAME_INVALID_JSON"]);
        const utf8 = new TextDecoder("utf-8", { fatal: true });
        let valid: boolean;
        try {
          JSON.parse(utf8.decode(body));
          valid = true;
        } catch {
          valid = false;
        }
        expect(result.ok).toBe(valid);
      }),
      runs(500),
    );
  }, FUZZ_TIMEOUT_MS);
});
