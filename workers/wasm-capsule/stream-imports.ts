/**
 * `astrid:io/streams@1.0.0` and `astrid:io/error@1.0.0`: byte streams over a kernel stream (a `tcp-stream`'s
 * `read-stream`/`write-stream`, kernel/capsules/host-net.ts). They share the socket with the stream's own reads and
 * writes (the kernel serves one call at a time). A read that would wait answers what is there (maybe nothing); the
 * blocking forms wait; a failure is `last-operation-failed` with an `error` whose text names the kernel's code, and
 * the end of the stream (or the capsule unloading) is `closed`. An input stream may instead be backed by a
 * `ByteSource` (an HTTP response's body, http-imports.ts), an output stream by a `ByteSink` (an HTTP request's body);
 * each keeps that contract itself.
 */
import type { SyscallResult } from "../../protocol/capsule-messages";
import { Failure } from "./guest-failure";
import type { GuestHost } from "./guest-host";
import { Pollable } from "./pollable";

/** Kernel codes that mean the stream is over, not that an operation failed. */
const CLOSED = new Set(["ASTRID_ERR_NET_CLOSED", "ASTRID_ERR_CAPSULE_UNAVAILABLE", "ASTRID_ERR_NOT_FOUND"]);
/** The longest one kernel wait lasts; a blocking call is several. */
const MAX_WAIT_MS = 60_000;
/** How often a waiting output stream looks for room (the kernel does not announce a drained socket). */
const WRITE_LOOK_MS = 20;

/** An opaque `error` resource: its text for diagnostics only. */
export class IoError {
  constructor(private readonly text: string) {}
  toDebugString(): string {
    return this.text;
  }
}

/** What backs an input stream that is not a socket. */
export interface ByteSource {
  /** Up to `len` bytes, waiting (up to `waitMs`) only when asked to; throws the `stream-error` (`closed` past the end). */
  take(len: number, waitMs: number): Uint8Array;
  /** Whether a read answers at once (bytes, the end, or a failure). */
  ready(): boolean;
}

/** What backs an output stream that is not a socket. */
export interface ByteSink {
  /** Takes all of `bytes` or throws the `stream-error`. */
  write(bytes: Uint8Array): void;
  /** Bytes `write` takes now; throws the `stream-error` once the sink is gone. */
  room(): number;
}

const own = (data: Uint8Array) => (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice());

/** The two packages, and the classes the net package hands out. */
export function streamImports(host: GuestHost) {
  /** A kernel answer, or the `stream-error` thrown for its refusal. */
  const check = (result: SyscallResult): unknown => {
    if (result.ok) return result.value;
    if (CLOSED.has(result.code)) throw new Failure({ tag: "closed" });
    throw new Failure({ tag: "last-operation-failed", val: new IoError(`${result.code}: ${result.message}`) as never });
  };
  const clamp = (len: bigint) => Number(len > 10n * 1024n * 1024n ? 10n * 1024n * 1024n : len);

  class InputStream {
    readonly #source: ByteSource | undefined;
    constructor(readonly id: string, source?: ByteSource) {
      this.#source = source;
    }
    /** Up to `len` bytes, waiting at most `waitMs`; `closed` past the end. */
    take(len: bigint, waitMs: number): Uint8Array {
      if (this.#source) return this.#source.take(clamp(len), waitMs);
      const got = check(host.call("net.read", this.id, "bytes", clamp(len), waitMs)) as { status: string; data?: Uint8Array };
      return got.data ?? new Uint8Array();
    }
    read(len: bigint): Uint8Array {
      return this.take(len, 0);
    }
    blockingRead(len: bigint): Uint8Array {
      if (len === 0n) return new Uint8Array();
      for (;;) {
        const data = this.take(len, MAX_WAIT_MS);
        if (data.length > 0) return data;
      }
    }
    skip(len: bigint): bigint {
      return BigInt(this.read(len).length);
    }
    blockingSkip(len: bigint): bigint {
      return BigInt(this.blockingRead(len).length);
    }
    subscribe() {
      const source = this.#source;
      if (source) return new Pollable(host, () => source.ready());
      return new Pollable(host, () => { const r = host.call("net.ready", this.id); return !r.ok || r.value === true; });
    }
  }

  class OutputStream {
    readonly #sink: ByteSink | undefined;
    constructor(readonly id: string, sink?: ByteSink) {
      this.#sink = sink;
    }
    checkWrite(): bigint {
      if (this.#sink) return BigInt(this.#sink.room());
      return BigInt(check(host.call("net.option", this.id, "write-room")) as number);
    }
    write(contents: Uint8Array): void {
      if (this.#sink) return this.#sink.write(contents);
      // A byte write takes what the socket's buffer has room for; the rest goes in the next round.
      for (let rest = contents; rest.length > 0; ) {
        const done = check(host.call("net.write", this.id, own(rest), false)) as { status: string; written?: number };
        if (done.status === "written") rest = rest.subarray(done.written!);
      }
    }
    blockingWriteAndFlush(contents: Uint8Array): void {
      this.write(contents);
    }
    /** Node sends what it queued as fast as the peer takes it: there is nothing to push. */
    flush(): void {
      this.checkWrite();
    }
    blockingFlush(): void {
      this.checkWrite();
    }
    subscribe() {
      const sink = this.#sink;
      if (sink) return new Pollable(host, () => { try { return sink.room() > 0; } catch { return true; } });
      return new Pollable(host, () => { const r = host.call("net.option", this.id, "write-room"); return !r.ok || (r.value as number) > 0; }, WRITE_LOOK_MS);
    }
    writeZeroes(len: bigint): void {
      this.write(new Uint8Array(clamp(len)));
    }
    blockingWriteZeroesAndFlush(len: bigint): void {
      this.write(new Uint8Array(clamp(len)));
    }
    splice(src: InputStream, len: bigint): bigint {
      const data = src.read(len);
      if (data.length > 0) this.write(data);
      return BigInt(data.length);
    }
    blockingSplice(src: InputStream, len: bigint): bigint {
      const data = src.blockingRead(len);
      this.write(data);
      return BigInt(data.length);
    }
  }

  return { InputStream, OutputStream, streams: { InputStream, OutputStream }, error: { Error: IoError } };
}
