/**
 * Length-prefixed JSON framing (reference §3.1): a 4-byte big-endian length, then that many bytes of UTF-8 JSON.
 * No delimiter, one JSON object per frame, the handshake included.
 */
import { isUtf8 } from "node:buffer";
import { AstridError } from "./errors";

/** Bytes in the length prefix. */
export const FRAME_HEADER_BYTES = 4;
/** Largest handshake request the daemon reads; a bigger one is dropped without a reply. */
export const MAX_HANDSHAKE_BYTES = 4096;
/** Largest frame a client may send after the handshake (10 MiB). */
export const MAX_CLIENT_FRAME_BYTES = 10 * 1024 * 1024;
/** Largest frame a client accepts from the daemon (50 MiB). */
export const MAX_SERVER_FRAME_BYTES = 50 * 1024 * 1024;

/** Serialises one value into a complete frame (prefix and body in one buffer, written back-to-back). */
export function encodeFrame(value: unknown): Buffer {
  const json = JSON.stringify(value);
  const bodyLength = Buffer.byteLength(json);
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + bodyLength);
  frame.writeUInt32BE(bodyLength, 0);
  frame.write(json, FRAME_HEADER_BYTES, "utf8");
  return frame;
}

/**
 * Reassembles frames from arbitrary chunks (split anywhere, several per chunk). Pull-based so the caller can
 * change the size limit between frames: the handshake is read under 4 KiB, everything after it under 10 MiB.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private limit: number) {}

  /** Sets the largest body length accepted for the frames not yet returned. */
  setLimit(limit: number): void {
    this.limit = limit;
  }

  /** Bytes received but not yet returned as a frame. */
  get pendingBytes(): number {
    return this.buffered;
  }

  /** The body length the buffered frame's prefix declares, or null while fewer than 4 bytes are buffered. */
  get declaredLength(): number | null {
    return this.buffered < FRAME_HEADER_BYTES ? null : this.contiguous(FRAME_HEADER_BYTES).readUInt32BE(0);
  }

  /** Drops whatever is buffered (the connection is going away). */
  clear(): void {
    this.chunks = [];
    this.buffered = 0;
  }

  /** Appends received bytes. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /**
   * Returns the next complete frame body, or null when more bytes are needed.
   * Throws ASTRID_ERR_FRAME_TOO_LARGE as soon as a prefix declares more than the limit: the stream cannot be
   * trusted after that, so the caller closes it.
   */
  next(): Buffer | null {
    if (this.buffered < FRAME_HEADER_BYTES) return null;
    const head = this.contiguous(FRAME_HEADER_BYTES);
    const length = head.readUInt32BE(0);
    if (length > this.limit) {
      throw new AstridError(
        "ASTRID_ERR_FRAME_TOO_LARGE",
        `frame of ${length} bytes exceeds the limit of ${this.limit} bytes`,
      );
    }
    if (this.buffered < FRAME_HEADER_BYTES + length) return null;
    const whole = this.contiguous(FRAME_HEADER_BYTES + length);
    const body = whole.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length);
    this.consume(FRAME_HEADER_BYTES + length);
    return body;
  }

  /** Makes the first `n` buffered bytes one buffer, merging chunks only when a frame spans them. */
  private contiguous(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first;
    const merged: Buffer = Buffer.concat(this.chunks, this.buffered);
    this.chunks = [merged];
    return merged;
  }

  private consume(n: number): void {
    this.buffered -= n;
    const first = this.chunks[0]!;
    if (first.length === n) {
      this.chunks.shift();
    } else {
      // `contiguous` guaranteed the consumed bytes all sit in the first chunk.
      this.chunks[0] = first.subarray(n);
    }
  }
}

/** Parses a frame body as JSON; ASTRID_ERR_FRAME_INVALID_JSON when it is not. */
export function parseFrameJson(body: Buffer): unknown {
  // `toString("utf8")` would turn invalid bytes into U+FFFD and accept the frame changed; the reference (serde_json)
  // refuses it, and so do we.
  if (!isUtf8(body)) throw new AstridError("ASTRID_ERR_FRAME_INVALID_JSON", "frame body is not valid UTF-8");
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (err) {
    throw new AstridError("ASTRID_ERR_FRAME_INVALID_JSON", "frame body is not valid JSON", { cause: err });
  }
}
