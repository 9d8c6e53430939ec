/**
 * The `http` namespace of the `@astrid-os/sdk` surface: the reference's reqwest-shaped builder, `streamStart` (the
 * body read as it arrives), and a WHATWG-shaped `fetch`, all gated alike (`net` in the manifest, the address guard).
 */
import { jsonText, parseJson, hostCall, unsupported } from "./astrid-os-sdk-errors";
import { textOf } from "./astrid-os-sdk-io";
import type { SdkContext } from "./astrid-os-sdk-ipc";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Header lookups of a fetch response, case-insensitive like WHATWG `Headers`. */
class FetchHeaders {
  readonly #map = new Map<string, string>();

  constructor(entries: Iterable<[string, string]>) {
    for (const [k, v] of entries) this.#map.set(k.toLowerCase(), v);
  }

  get(name: string): string | null {
    return this.#map.get(String(name).toLowerCase()) ?? null;
  }

  has(name: string): boolean {
    return this.#map.has(String(name).toLowerCase());
  }

  forEach(fn: (value: string, key: string) => void): void {
    this.#map.forEach((v, k) => fn(v, k));
  }

  entries(): IterableIterator<[string, string]> {
    return this.#map.entries();
  }

  keys(): IterableIterator<string> {
    return this.#map.keys();
  }

  values(): IterableIterator<string> {
    return this.#map.values();
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.#map.entries();
  }
}

/** `http`: the reqwest-shaped builder, `streamStart`, and `fetch` — all through `net` and the address guard. */
export function httpModule(ctx: SdkContext): Record<string, unknown> {
  class Request {
    headers = new Map<string, string>();
    body: Uint8Array | undefined;

    constructor(public method: string, public url: string) {}

    static get(url: string) {
      return new Request("GET", url);
    }
    static post(url: string) {
      return new Request("POST", url);
    }
    static put(url: string) {
      return new Request("PUT", url);
    }
    static delete(url: string) {
      return new Request("DELETE", url);
    }
    static patch(url: string) {
      return new Request("PATCH", url);
    }
    static head(url: string) {
      return new Request("HEAD", url);
    }

    header(key: string, value: string): this {
      this.headers.set(key, value);
      return this;
    }

    setBody(body: string | Uint8Array): this {
      this.body = typeof body === "string" ? encoder.encode(body) : body;
      return this;
    }

    json<T>(value: T): this {
      this.headers.set("Content-Type", "application/json");
      this.body = encoder.encode(jsonText("http.Request.json", value));
      return this;
    }
  }

  class Response {
    readonly headers: Map<string, string>;
    readonly #body: Uint8Array;

    constructor(readonly status: number, headers: Record<string, string>, body: string) {
      this.headers = new Map(Object.entries(headers));
      this.#body = encoder.encode(body);
    }

    bytes(): Uint8Array {
      return this.#body;
    }

    text(): string {
      return decoder.decode(this.#body);
    }

    json<T = unknown>(): T {
      return parseJson<T>("http.Response.json", this.text());
    }

    ok(): boolean {
      return this.status >= 200 && this.status < 300;
    }
  }

  const send = async (req: Request, label = `http.send ${req.method} ${req.url}`): Promise<Response> => {
    // The daemon carries request and response bodies as text.
    const body = req.body === undefined ? undefined : textOf(label, req.body);
    const raw = await hostCall(label, () => ctx.api.http.request({
      url: req.url,
      method: req.method.toUpperCase(),
      headers: Object.fromEntries(req.headers),
      ...(body !== undefined ? { body } : {}),
    }));
    return new Response(raw.status, raw.headers, raw.body);
  };

  /** A response whose body the kernel hands out as it arrives (`http.stream_*`: the same checks as `send`). */
  class HttpStreamHandle {
    #id: string | null;
    #done = false;

    constructor(id: string, readonly status: number, readonly headers: Map<string, string>) {
      this.#id = id;
    }

    /** The next bytes, or `undefined` at the end (or once closed). */
    async read(): Promise<Uint8Array | undefined> {
      for (;;) {
        const id = this.#id;
        if (id === null || this.#done) return undefined;
        const got = (await hostCall("http.HttpStreamHandle.read", () => ctx.syscall("http.stream_read", id))) as { data: string; done: boolean };
        if (got.done) {
          this.#done = true;
          return undefined;
        }
        if (got.data.length > 0) return new Uint8Array(Buffer.from(got.data, "base64"));
      }
    }

    /** Drops the rest of the body; idempotent. */
    close(): void {
      const id = this.#id;
      if (id === null) return;
      this.#id = null;
      ctx.syscall("http.stream_close", id).catch(() => undefined);
    }

    [Symbol.dispose](): void {
      this.close();
    }

    async *[Symbol.asyncIterator](): AsyncIterableIterator<Uint8Array> {
      for (let chunk = await this.read(); chunk !== undefined; chunk = await this.read()) yield chunk;
    }
  }

  class FetchResponse {
    readonly ok: boolean;
    readonly statusText: string;
    readonly headers: FetchHeaders;
    readonly #body: Uint8Array;

    constructor(readonly url: string, readonly status: number, headers: Map<string, string>, body: Uint8Array) {
      this.ok = status >= 200 && status < 300;
      this.statusText = STATUS_TEXT[status] ?? "";
      this.headers = new FetchHeaders(headers);
      this.#body = body;
    }

    async text(): Promise<string> {
      return decoder.decode(this.#body);
    }

    async json<T = unknown>(): Promise<T> {
      return JSON.parse(await this.text()) as T;
    }

    async arrayBuffer(): Promise<ArrayBuffer> {
      return this.#body.slice().buffer;
    }

    async bytes(): Promise<Uint8Array> {
      return this.#body;
    }
  }

  /** WHATWG-shaped `fetch` over the same gated call (a capsule may assign it to its own `globalThis.fetch`). */
  const fetch = async (url: string, init: { method?: string; headers?: Record<string, string> | Map<string, string> | Array<[string, string]>; body?: string | Uint8Array | Record<string, unknown> } = {}): Promise<FetchResponse> => {
    const req = new Request(init.method ?? "GET", String(url));
    if (init.headers) {
      const entries = init.headers instanceof Map ? init.headers.entries() : Array.isArray(init.headers) ? init.headers : Object.entries(init.headers);
      for (const [k, v] of entries) req.header(k, v);
    }
    if (typeof init.body === "string" || init.body instanceof Uint8Array) req.setBody(init.body);
    else if (init.body !== undefined) req.json(init.body);
    const res = await send(req, `fetch ${req.method} ${req.url}`);
    return new FetchResponse(req.url, res.status, res.headers, res.bytes());
  };

  return {
    Request,
    Response,
    send,
    /** Starts a request whose body is read as it arrives (past `send`'s 10 MB; at most 4 streams open at once). */
    async streamStart(req: Request): Promise<{ handle: HttpStreamHandle; status: number; headers: Map<string, string> }> {
      const label = `http.streamStart ${req.method} ${req.url}`;
      const body = req.body === undefined ? undefined : textOf(label, req.body);
      const opened = (await hostCall(label, () => ctx.syscall("http.stream_open", {
        url: req.url,
        method: req.method.toUpperCase(),
        headers: Object.fromEntries(req.headers),
        ...(body !== undefined ? { body } : {}),
      }))) as { id: string; status: number; headers: Record<string, string> };
      const handle = new HttpStreamHandle(opened.id, opened.status, new Map(Object.entries(opened.headers)));
      return { handle, status: handle.status, headers: handle.headers };
    },
    fetch,
    fetchPolyfill: fetch,
    installFetchPolyfill(): never {
      throw unsupported("http.installFetchPolyfill", "the SDK cannot reach the capsule's globals; write `globalThis.fetch = http.fetch` in the capsule");
    },
  };
}

const STATUS_TEXT: Readonly<Record<number, string>> = {
  200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 301: "Moved Permanently", 302: "Found", 304: "Not Modified",
  400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 429: "Too Many Requests",
  500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
};
