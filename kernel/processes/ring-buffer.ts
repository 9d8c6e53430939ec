/**
 * The last `capacity` bytes of a process's output. Chunks are kept as they came (no 1 MB allocation for a process
 * that prints one line) and the oldest are dropped, or cut, once the total passes the capacity; the count of
 * dropped bytes says that the text is a tail.
 */

/** Bytes kept per stream of a host process: 1 MB. */
export const PROCESS_OUTPUT_BYTES = 1024 * 1024;

/** A byte ring buffer that keeps the tail of what is written to it. */
export class RingBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  /** Bytes written and then dropped to stay within the capacity. */
  dropped = 0;

  constructor(readonly capacity: number = PROCESS_OUTPUT_BYTES) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError("capacity must be a positive whole number of bytes");
  }

  /** Bytes held now (at most the capacity). */
  get length(): number {
    return this.size;
  }

  /** True once anything was dropped: the text is a tail, not the whole output. */
  get truncated(): boolean {
    return this.dropped > 0;
  }

  write(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (chunk.length >= this.capacity) {
      // Only the end of this chunk survives; everything before it goes.
      this.dropped += this.size + chunk.length - this.capacity;
      this.chunks = [Buffer.from(chunk.subarray(chunk.length - this.capacity))];
      this.size = this.capacity;
      return;
    }
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.capacity) {
      const head = this.chunks[0]!;
      const excess = this.size - this.capacity;
      if (head.length <= excess) {
        this.chunks.shift();
        this.size -= head.length;
        this.dropped += head.length;
      } else {
        // Copy the kept part: a view would pin the whole (up to 64 KiB) read buffer.
        this.chunks[0] = Buffer.from(head.subarray(excess));
        this.size -= excess;
        this.dropped += excess;
      }
    }
  }

  /** The stream offset of the oldest byte held (everything before it was dropped). */
  get start(): number {
    return this.dropped;
  }

  /** The stream offset just past the newest byte held (all bytes ever written). */
  get end(): number {
    return this.dropped + this.size;
  }

  /** At most `max` held bytes from stream offset `from` on (from the oldest held one when `from` was dropped). */
  since(from: number, max: number): Buffer {
    const begin = Math.max(from, this.start);
    if (begin >= this.end || max <= 0) return Buffer.alloc(0);
    const offset = begin - this.start;
    return Buffer.from(this.bytes().subarray(offset, offset + Math.min(max, this.end - begin)));
  }

  /** The bytes held, oldest first. */
  bytes(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.size)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  /**
   * The held bytes as UTF-8. When the head was cut, the cut may fall inside a character: its leftover continuation
   * bytes are skipped rather than shown as a replacement character.
   */
  text(): string {
    let bytes = this.bytes();
    if (this.truncated) {
      let start = 0;
      while (start < bytes.length && start < 3 && (bytes[start]! & 0xc0) === 0x80) start++;
      bytes = bytes.subarray(start);
    }
    return bytes.toString("utf8");
  }
}
