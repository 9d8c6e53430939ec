/**
 * The `http.stream_*` host calls: a response whose body a capsule reads as it arrives (a server-sent event
 * stream, a download past the 10 MiB of `http.request`). `stream_open` passes every check `http.request` does —
 * scheme, manifest `net`, the principal's `self:net:http` and egress, the address guard on each hop, the pinned
 * connection — and answers with the status and headers once they came (within `timeout_ms`); `stream_read` hands
 * out the next piece of the body (base64, at most 1 MiB), waiting up to 20 s for one, and forgets the stream once
 * it reported the end; `stream_ready` says whether a read would answer at once (a piece is here, or the end or a
 * failure) and, when not, asks for the next piece, whose arrival wakes the capsule (`run.posted`: a WebAssembly
 * guest sleeping in `poll`); `stream_close` drops it before.
 *
 * Limits: 4 streams per capsule (ASTRID_ERR_HTTP_STREAM_LIMIT beyond); a stream nobody reads for 120 s is closed;
 * every stream of a capsule closes when its run ends, and all of them when the daemon stops.
 */
import { randomUUID } from "node:crypto";
import { AstridError } from "../../protocol/errors";
import type { AddressGuard } from "../net/address-guard";
import { guardedOpen, translate, type GuardedStream, type HopCheck } from "../net/guarded-fetch";
import type { CapsuleRun } from "./capsule-run";
import type { HostCall } from "./host-call";

/** Streams one capsule may hold open. */
export const MAX_HTTP_STREAMS = 4;
/** Longest one `stream_read` waits for the body to move (the capsule reads again after an empty, unfinished read). */
export const HTTP_STREAM_READ_WAIT_MS = 20_000;
/** A stream not read (or opened) for this long is closed. */
export const HTTP_STREAM_IDLE_MS = 120_000;
/** Most body bytes one read hands out. */
export const MAX_HTTP_STREAM_READ_BYTES = 1024 * 1024;

/** A request as host-http.ts validated it. */
export interface ParsedRequest {
  url: URL;
  method: string;
  headers: Record<string, string>;
  body: Buffer | null;
  timeoutMs: number;
  /** Redirects followed at most (≤ MAX_REDIRECTS). */
  maxRedirects: number;
}

/** What one read answers: base64 bytes, and whether the body ended (an empty unfinished read: read again). */
export interface StreamRead {
  data: string;
  done: boolean;
}

interface OpenStream {
  readonly run: CapsuleRun;
  readonly response: GuardedStream;
  readonly iterator: AsyncIterator<Buffer>;
  readonly signal: AbortSignal;
  /** The body's next piece, asked for by a read that stopped waiting for it, or by a readiness look. */
  pending?: Promise<IteratorResult<Buffer>>;
  /** `pending` has settled (a piece, the end or a failure is here): a read answers at once. */
  arrived: boolean;
  /** What a piece held beyond one read's cap. */
  leftover?: Buffer;
  done: boolean;
  reading: boolean;
  idle?: NodeJS.Timeout;
}

/** The open streams of every capsule. */
export class HttpStreams {
  private readonly streams = new Map<string, OpenStream>();
  /** Streams being opened, per run (they count against the limit before they exist). */
  private readonly opening = new Map<CapsuleRun, number>();

  /** @param alsoHeld what else of a run counts against its streams (its uploads, host-http-uploads.ts) */
  constructor(private readonly guard: AddressGuard, private readonly alsoHeld: (run: CapsuleRun) => number = () => 0) {}

  /** Streams `run` holds or is opening, and whatever else counts against the same limit. */
  heldBy(run: CapsuleRun): number {
    let n = this.opening.get(run) ?? 0;
    for (const stream of this.streams.values()) if (stream.run === run) n++;
    return n + this.alsoHeld(run);
  }

  /** Opens a stream for `call` (its first hop already checked); `check` checks each redirect. */
  async open(call: HostCall, req: ParsedRequest, check: HopCheck): Promise<{ id: string; status: number; headers: Record<string, string> }> {
    const { run } = call;
    if (this.heldBy(run) >= MAX_HTTP_STREAMS) {
      throw new AstridError("ASTRID_ERR_HTTP_STREAM_LIMIT", `${run.record.name}: ${MAX_HTTP_STREAMS} HTTP streams are open; close one first`);
    }
    this.opening.set(run, (this.opening.get(run) ?? 0) + 1);
    const controller = new AbortController();
    const deadline = setTimeout(() => controller.abort(new AstridError("ASTRID_ERR_TIMEOUT", `${call.call} ${req.method} ${req.url.origin}: no response within ${req.timeoutMs} ms (timeout_ms)`)), req.timeoutMs);
    let response: GuardedStream;
    try {
      response = await guardedOpen({ url: req.url, method: req.method, headers: req.headers, body: req.body, signal: controller.signal, maxBodyBytes: Infinity }, this.guard, check);
    } finally {
      clearTimeout(deadline);
      const left = (this.opening.get(run) ?? 1) - 1;
      if (left > 0) this.opening.set(run, left);
      else this.opening.delete(run);
    }
    if (run.ended) {
      response.close();
      throw new AstridError("ASTRID_ERR_CAPSULE_UNAVAILABLE", `${run.record.name} stopped; its HTTP stream was closed`);
    }
    const id = randomUUID();
    const stream: OpenStream = { run, response, iterator: response.body[Symbol.asyncIterator](), signal: controller.signal, done: false, reading: false, arrived: false };
    this.streams.set(id, stream);
    this.touch(id, stream);
    return { id, status: response.status, headers: response.headers };
  }

  /** The next piece of the body: waits up to HTTP_STREAM_READ_WAIT_MS for one. */
  async read(call: HostCall, rawId: unknown): Promise<StreamRead> {
    const [id, stream] = this.find(call, rawId);
    if (stream.reading) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call.call}: the stream is being read already; read it one call at a time`);
    this.touch(id, stream);
    if (stream.leftover) return { data: this.hand(stream, stream.leftover), done: false };
    if (stream.done) return { data: "", done: true };
    stream.reading = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      const pending = this.ask(stream);
      const waited = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), HTTP_STREAM_READ_WAIT_MS)));
      const next = await Promise.race([pending, waited]);
      if (next === null) return { data: "", done: false };
      stream.pending = undefined;
      stream.arrived = false;
      if (next.done) {
        // The body ended: the stream no longer counts against the capsule's limit (a later read finds it gone).
        stream.done = true;
        this.drop(id);
        return { data: "", done: true };
      }
      return { data: this.hand(stream, Buffer.from(next.value)), done: false };
    } catch (err) {
      this.drop(id);
      throw translate(err, stream.signal, stream.response.url);
    } finally {
      clearTimeout(timer);
      stream.reading = false;
      if (this.streams.get(id) === stream) this.touch(id, stream);
    }
  }

  /**
   * Whether a read would answer at once: a piece (or the end, or a failure) is here. When not, the next piece is
   * asked for, and its arrival wakes the capsule. A stream that is gone (ended, closed, idle) is ready: a read
   * reports it.
   */
  ready(call: HostCall, rawId: unknown): boolean {
    const stream = typeof rawId === "string" ? this.streams.get(rawId) : undefined;
    if (!stream || stream.run !== call.run) return true;
    // A guest waiting for the body is using the stream: it is not idle.
    this.touch(rawId as string, stream);
    if (stream.leftover || stream.done) return true;
    this.ask(stream);
    return stream.arrived;
  }

  /** Asks for the body's next piece once; when it settles, the stream is ready and its capsule is woken. */
  private ask(stream: OpenStream): Promise<IteratorResult<Buffer>> {
    if (stream.pending) return stream.pending;
    const settled = () => {
      stream.arrived = true;
      stream.run.posted?.();
    };
    stream.pending = stream.iterator.next();
    // The handler also keeps a failure nobody reads yet from being an unhandled rejection; a read reports it.
    stream.pending.then(settled, settled);
    return stream.pending;
  }

  /** Closes a stream; false when it was not open. */
  async close(call: HostCall, rawId: unknown): Promise<boolean> {
    if (typeof rawId !== "string" || this.streams.get(rawId)?.run !== call.run) return false;
    this.drop(rawId);
    return true;
  }

  /** Closes the streams of a run that ended. */
  endRun(run: CapsuleRun): void {
    for (const [id, stream] of this.streams) if (stream.run === run) this.drop(id);
  }

  /** Closes every stream (the daemon is stopping). */
  closeAll(): void {
    for (const id of [...this.streams.keys()]) this.drop(id);
  }

  private find(call: HostCall, rawId: unknown): [string, OpenStream] {
    const stream = typeof rawId === "string" ? this.streams.get(rawId) : undefined;
    // Another capsule's stream is as unknown as a closed one.
    if (!stream || stream.run !== call.run) {
      throw new AstridError("ASTRID_ERR_NOT_FOUND", `${call.call}: no open HTTP stream with that id (closed, idle for ${HTTP_STREAM_IDLE_MS / 1000} s, or never opened)`);
    }
    return [rawId as string, stream];
  }

  /** Base64 of at most MAX_HTTP_STREAM_READ_BYTES of `bytes`, keeping the rest for the next read. */
  private hand(stream: OpenStream, bytes: Buffer): string {
    stream.leftover = bytes.length > MAX_HTTP_STREAM_READ_BYTES ? bytes.subarray(MAX_HTTP_STREAM_READ_BYTES) : undefined;
    return bytes.subarray(0, MAX_HTTP_STREAM_READ_BYTES).toString("base64");
  }

  /** Restarts the stream's idle deadline. */
  private touch(id: string, stream: OpenStream): void {
    clearTimeout(stream.idle);
    stream.idle = setTimeout(() => this.drop(id), HTTP_STREAM_IDLE_MS);
    stream.idle.unref();
  }

  private drop(id: string): void {
    const stream = this.streams.get(id);
    if (!stream) return;
    this.streams.delete(id);
    clearTimeout(stream.idle);
    stream.response.close();
  }
}
