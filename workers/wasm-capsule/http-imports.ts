/**
 * `astrid:http/host@1.0.0` and `@1.1.0`: outbound HTTP through the kernel's `http.*` calls (kernel/capsules/host-http.ts:
 * the manifest's `net`, the principal's capability and egress, the address guard on every hop, size limits, audit).
 * Each version is its own import object (its own `http-stream` class, its own error cases); 1.1.0 adds per-request
 * options, response metadata, trailers, and a streamed request body (`http-upload`); both have a stream's pollable
 * and `input-stream` body.
 */
import { createHash } from "node:crypto";
import { check, DENIED, DISPOSE, fail, Failure, utf8Text } from "./guest-failure";
import type { GuestHost } from "./guest-host";
import { Pollable } from "./pollable";
import { IoError, type streamImports } from "./stream-imports";

/**
 * The longest a stream's pollable sleeps between two looks. The kernel wakes it when bytes arrive; this bounds the
 * wait should one wake-up still be missed (a CI run once saw a readiness test wait past 20 s).
 */
const READY_LOOK_MS = 1000;

const HTTP_ERRORS = {
  ...DENIED,
  ASTRID_ERR_REQUEST_INVALID: "invalid-request",
  ASTRID_ERR_NET_ADDRESS_BLOCKED: "airlock-rejected",
  ASTRID_ERR_HTTP_FAILED: "connection-error",
  ASTRID_ERR_TIMEOUT: "timeout",
  ASTRID_ERR_HTTP_BODY_TOO_LARGE: "body-too-large",
};
/** A stream's own refusals: one too many open, or one the kernel closed (idle, or the capsule's run ended). */
const STREAM_ERRORS = { ...HTTP_ERRORS, ASTRID_ERR_HTTP_STREAM_LIMIT: "quota", ASTRID_ERR_NOT_FOUND: "closed" };
/** 1.1.0 has a case for a redirect chain past the caller's (or the host's) limit. */
const HTTP_ERRORS_1_1 = { ...HTTP_ERRORS, ASTRID_ERR_HTTP_TOO_MANY_REDIRECTS: "too-many-redirects" };
const STREAM_ERRORS_1_1 = { ...STREAM_ERRORS, ASTRID_ERR_HTTP_TOO_MANY_REDIRECTS: "too-many-redirects" };

/** How long `read-chunk` waits for the body to move before it fails with `timeout` (the host's maximum too). */
const HTTP_CHUNK_TIMEOUT_MS = 120_000;
/** The kernel's longest `timeout_ms` (kernel/capsules/host-http.ts MAX_HTTP_TIMEOUT_MS). */
const MAX_REQUEST_TIMEOUT_MS = 30_000;
/** The kernel's redirect ceiling (kernel/net/guarded-fetch.ts MAX_REDIRECTS). */
const MAX_REDIRECTS = 5;
/** The kernel's cap on a buffered response body. */
const MAX_RESPONSE_BYTES = 10 * 1024 * 1024;

type KeyValue = { key: string; value: string };
type HttpRequestData = { url: string; method: { tag: string; val?: string }; headers: KeyValue[]; body?: Uint8Array };
/** 1.1.0's `request-options`, as jco lifts it (absent options are `undefined`, u64 as BigInt). */
export interface RequestOptions {
  timeouts?: { connectMs?: bigint; firstByteMs?: bigint; betweenBytesMs?: bigint; totalMs?: bigint };
  redirect?: "follow" | "error" | "manual";
  maxRedirects?: number;
  maxResponseBytes?: bigint;
  maxDecompressedBytes?: bigint;
  autoDecompress?: boolean;
  httpsOnly?: boolean;
  integrity?: string;
}

const encode = (text: string) => new TextEncoder().encode(text);
const headerList = (headers: Record<string, string>): KeyValue[] => Object.entries(headers).map(([key, value]) => ({ key, value }));
/** A caller's deadline in ms, bounded by the host's maximum (a `none` or 0 is the maximum). */
const bounded = (ms: bigint | undefined, max: number) => (ms === undefined || ms <= 0n || ms > BigInt(max) ? max : Number(ms));

/** The kernel's form of a request (bodies travel as UTF-8 text), with the options the kernel applies. */
function kernelRequest(request: HttpRequestData, options?: RequestOptions) {
  const method = request.method.tag === "other" ? String(request.method.val) : request.method.tag;
  const body = request.body === undefined ? undefined : utf8Text(request.body, "invalid-request");
  const headers = Object.fromEntries(request.headers.map((h) => [h.key, h.value]));
  const out: Record<string, unknown> = { url: request.url, method: method.toUpperCase(), headers, ...(body !== undefined ? { body } : {}) };
  if (!options) return out;
  if (options.httpsOnly === true && !/^https:/i.test(request.url.trim())) fail("scheme-denied");
  if (options.redirect === "manual") fail("unknown", "redirect-policy manual is not supported by this host; use follow or error");
  if (options.integrity !== undefined && !/^sha(256|384|512)-[A-Za-z0-9+/]+=*$/.test(options.integrity)) fail("invalid-request");
  // connect, first byte and the whole request all fall within the kernel's one deadline (≤ 30 s): the shortest wins.
  const t = options.timeouts;
  const timeouts = t ? [t.connectMs, t.firstByteMs, t.totalMs].filter((ms): ms is bigint => ms !== undefined) : [];
  if (timeouts.length > 0) out.timeout_ms = Math.min(...timeouts.map((ms) => bounded(ms, MAX_REQUEST_TIMEOUT_MS)));
  // `error` follows none, so a redirect fails; the kernel's ceiling bounds a larger `max-redirects`.
  if (options.redirect === "error") out.max_redirects = 0;
  else if (options.maxRedirects !== undefined) out.max_redirects = Math.min(options.maxRedirects, MAX_REDIRECTS);
  return out;
}

/** `body` against a `sha256-…`/`sha384-…`/`sha512-…` digest (subresource integrity). */
function matchesIntegrity(body: Uint8Array, integrity: string): boolean {
  const dash = integrity.indexOf("-");
  return createHash(integrity.slice(0, dash)).update(body).digest("base64") === integrity.slice(dash + 1);
}

/** The two package versions; `byteStreams` makes 1.1.0's `body-stream` an `astrid:io/streams` input-stream. */
export function httpImports(host: GuestHost, byteStreams: ReturnType<typeof streamImports>) {
  /** A response whose body the kernel hands out as it arrives (`http.stream_*`, the same checks as `http-request`). */
  class HttpStream {
    #id: string | null;
    #done = false;
    /** Bytes read from the kernel that `body-stream` did not hand out yet (read-chunk hands them out first). */
    #buffered: Uint8Array | null = null;

    readonly #code: number;
    readonly #head: KeyValue[];
    readonly #chunkTimeoutMs: number;
    readonly #errors: Record<string, string>;

    constructor(id: string, code: number, head: KeyValue[], chunkTimeoutMs = HTTP_CHUNK_TIMEOUT_MS, errors: Record<string, string> = STREAM_ERRORS) {
      this.#id = id;
      this.#code = code;
      this.#head = head;
      this.#chunkTimeoutMs = chunkTimeoutMs;
      this.#errors = errors;
    }

    status(): number {
      return this.#code;
    }

    headers(): KeyValue[] {
      return this.#head;
    }

    /** The next bytes (an empty list at the end); `timeout` when none came for the chunk timeout. */
    readChunk(): Uint8Array {
      const id = this.#id ?? fail("closed");
      if (this.#buffered) {
        const out = this.#buffered;
        this.#buffered = null;
        return out;
      }
      if (this.#done) return new Uint8Array();
      const deadline = performance.now() + this.#chunkTimeoutMs;
      for (;;) {
        // Sleeping until the kernel says bytes came (it wakes the worker) keeps a short chunk timeout exact; the
        // kernel's own wait in a read is 20 s.
        const left = deadline - performance.now();
        const mark = host.eventMark?.();
        if (!this.isReady()) {
          if (left <= 0) return fail("timeout");
          host.waitEvents(Math.min(left, 1_000), mark);
          continue;
        }
        const read = check(host.call("http.stream_read", id), this.#errors) as { data: string; done: boolean };
        if (read.done) {
          this.#done = true;
          return new Uint8Array();
        }
        if (read.data.length > 0) return new Uint8Array(Buffer.from(read.data, "base64"));
        if (performance.now() >= deadline) return fail("timeout");
      }
    }

    /** Ready when a read answers at once: bytes are here, or the end, a failure, or the stream closed. */
    isReady(): boolean {
      if (this.#id === null || this.#done || this.#buffered) return true;
      const r = host.call("http.stream_ready", this.#id);
      return !r.ok || r.value === true;
    }

    /** A pollable ready when `read-chunk` would answer at once; the kernel wakes it when the next piece arrives. */
    subscribeReadable(): Pollable {
      return new Pollable(host, () => this.isReady(), READY_LOOK_MS);
    }

    /** Up to `len` bytes for `body-stream`, waiting only when `wait`; `closed` past the end. */
    take(len: number, wait: boolean): Uint8Array {
      if (len === 0) return new Uint8Array();
      if (!this.#buffered) {
        if (this.#id === null || this.#done) throw new Failure({ tag: "closed" });
        if (!wait && !this.isReady()) return new Uint8Array();
        let chunk: Uint8Array;
        try {
          chunk = this.readChunk();
        } catch (err) {
          const tag = (err as Failure).payload?.tag;
          if (tag === "closed") throw new Failure({ tag: "closed" });
          throw new Failure({ tag: "last-operation-failed", val: new IoError(`http-stream: ${tag ?? String(err)}`) as never });
        }
        if (chunk.length === 0) {
          if (this.#done) throw new Failure({ tag: "closed" });
          return chunk;
        }
        this.#buffered = chunk;
      }
      const buffered = this.#buffered;
      if (buffered.length <= len) {
        this.#buffered = null;
        return buffered;
      }
      this.#buffered = buffered.slice(len);
      return buffered.slice(0, len);
    }

    /** The body as an `input-stream` sharing this stream's cursor with `read-chunk`. */
    bodyStream() {
      return new byteStreams.InputStream("", { take: (len, waitMs) => this.take(len, waitMs > 0), ready: () => this.isReady() });
    }

    /**
     * Node's HTTP client (undici) keeps a response's trailers to itself in the way the kernel reads bodies, so
     * this host never has any: `none`, after the end as before it.
     */
    trailers(): KeyValue[] | undefined {
      if (this.#id === null) return fail("closed");
      return undefined;
    }

    close(): void {
      if (this.#id === null) return;
      host.call("http.stream_close", this.#id);
      this.#id = null;
      this.#buffered = null;
    }

    [DISPOSE](): void {
      this.close();
    }
  }

  const v1_0 = {
    HttpStream,
    httpRequest(request: HttpRequestData) {
      const response = check(host.call("http.request", kernelRequest(request)), HTTP_ERRORS) as { status: number; headers: Record<string, string>; body: string };
      return { status: response.status, headers: headerList(response.headers), body: encode(response.body) };
    },
    httpStreamStart(request: HttpRequestData) {
      const opened = check(host.call("http.stream_open", kernelRequest(request)), STREAM_ERRORS) as { id: string; status: number; headers: Record<string, string> };
      return new HttpStream(opened.id, opened.status, headerList(opened.headers));
    },
  };

  /** A 1.1.0 refusal: `redirect-policy.error` turns "too many redirects" into `redirect-blocked`. */
  const checked11 = (result: ReturnType<GuestHost["call"]>, table: Record<string, string>, options: RequestOptions | undefined) => {
    if (!result.ok && result.code === "ASTRID_ERR_HTTP_TOO_MANY_REDIRECTS" && options?.redirect === "error") return fail("redirect-blocked");
    return check(result, table);
  };

  const requestOpts = (request: HttpRequestData, options: RequestOptions | undefined) => {
    const started = performance.now();
    const response = checked11(host.call("http.request", kernelRequest(request, options)), HTTP_ERRORS_1_1, options) as { status: number; headers: Record<string, string>; body: string };
    const body = encode(response.body);
    const cap = options?.maxResponseBytes;
    if (cap !== undefined && cap < BigInt(Math.min(body.length, MAX_RESPONSE_BYTES + 1))) return fail("body-too-large");
    if (options?.integrity !== undefined && !matchesIntegrity(body, options.integrity)) return fail("integrity-mismatch");
    return {
      status: response.status,
      headers: headerList(response.headers),
      body,
      // The kernel does not say where redirects led: the URL asked for, and no hops counted (best-effort, as documented).
      meta: { finalUrl: request.url, redirectCount: 0, elapsedMs: BigInt(Math.round(performance.now() - started)), wireBytes: BigInt(body.length) },
    };
  };
  const streamOpts = (request: HttpRequestData, options: RequestOptions | undefined) => {
    const opened = checked11(host.call("http.stream_open", kernelRequest(request, options)), STREAM_ERRORS_1_1, options) as { id: string; status: number; headers: Record<string, string> };
    const between = bounded(options?.timeouts?.betweenBytesMs, HTTP_CHUNK_TIMEOUT_MS);
    return new HttpStream(opened.id, opened.status, headerList(opened.headers), between, STREAM_ERRORS_1_1);
  };

  /**
   * 1.1.0's streamed request body: what the guest writes to `body-sink` goes to the kernel piece by piece (the
   * guest never holds the whole body), which sends it at `finish`. A write past the body cap drops the upload: the
   * write fails, and `finish` answers `body-too-large`.
   */
  class HttpUpload {
    #id: string | null;
    #room: number;
    /** The error case a failed write left for `finish`. */
    #failed: string | null = null;

    readonly #options: RequestOptions | undefined;

    constructor(id: string, room: number, options: RequestOptions | undefined) {
      this.#id = id;
      this.#room = room;
      this.#options = options;
    }

    #write(bytes: Uint8Array): void {
      if (this.#id === null) throw new Failure({ tag: "closed" });
      if (bytes.length === 0) return;
      const r = host.call("http.upload_write", this.#id, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64"));
      if (!r.ok) {
        // The kernel dropped the upload (past the cap, idle, or the run ending): nothing more can be written.
        this.#id = null;
        this.#failed = STREAM_ERRORS_1_1[r.code as keyof typeof STREAM_ERRORS_1_1] ?? "closed";
        throw new Failure({ tag: "last-operation-failed", val: new IoError(`${r.code}: ${r.message}`) as never });
      }
      this.#room = (r.value as { room: number }).room;
    }

    #roomLeft(): number {
      if (this.#id === null) throw new Failure({ tag: "closed" });
      return this.#room;
    }

    bodySink() {
      return new byteStreams.OutputStream("", { write: (bytes) => this.#write(bytes), room: () => this.#roomLeft() });
    }

    /** Ready while the body has room under the cap (the kernel takes each write at once), or once the upload ended. */
    subscribeWritable(): Pollable {
      return new Pollable(host, () => this.#id === null || this.#room > 0);
    }

    /** Sends the request with the body written: its response stream. */
    finish(): HttpStream {
      if (this.#failed !== null) return fail(this.#failed);
      const id = this.#id ?? fail("closed");
      this.#id = null;
      const opened = checked11(host.call("http.upload_finish", id), STREAM_ERRORS_1_1, this.#options) as { id: string; status: number; headers: Record<string, string> };
      return new HttpStream(opened.id, opened.status, headerList(opened.headers), bounded(this.#options?.timeouts?.betweenBytesMs, HTTP_CHUNK_TIMEOUT_MS), STREAM_ERRORS_1_1);
    }

    /** Dropped before `finish`: the kernel forgets the body. */
    [DISPOSE](): void {
      if (this.#id !== null) host.call("http.stream_close", this.#id);
      this.#id = null;
    }
  }

  const v1_1 = {
    HttpStream,
    HttpUpload,
    httpRequest: (request: HttpRequestData) => requestOpts(request, undefined),
    httpRequestOpts: requestOpts,
    httpStreamStart: (request: HttpRequestData) => streamOpts(request, undefined),
    httpStreamStartOpts: streamOpts,
    /** The request's own `body` is ignored: the body comes from the upload's sink. */
    httpUploadStart(request: HttpRequestData, options: RequestOptions | undefined) {
      const started = check(host.call("http.upload_open", kernelRequest({ ...request, body: undefined }, options)), STREAM_ERRORS_1_1) as { id: string; room: number };
      return new HttpUpload(started.id, started.room, options);
    },
  };

  return { v1_0, v1_1 };
}
