/**
 * The `http.*` host calls: outbound HTTP for capsules (docs/network.md). A request is allowed when the URL is
 * http(s), its host is covered by the manifest's `[capabilities] net`, the acting principal holds `self:net:http`
 * and — when its profile lists `[network] egress` — the host is covered there too; then the address guard
 * (kernel/net/address-guard.ts) refuses private, loopback, link-local, metadata and other non-public addresses, and
 * the connection is pinned to the address it vetted. Each redirect hop is checked again, all of it.
 *
 * Limits: `timeout_ms` (≤ 30 s, default 30 s) covers the whole call, the wait for a slot included; request and
 * response bodies ≤ 10 MiB; at most 4 requests of one capsule in flight, 64 more queued (beyond: refused with
 * ASTRID_ERR_HTTP_QUEUE_FULL). A capsule's requests are aborted when its run ends and when the daemon stops. A
 * stream (`http.stream_*`, host-http-streams.ts) passes the same checks, hop by hop, then hands its body out in reads;
 * an upload (`http.upload_*`, host-http-uploads.ts) is checked when it starts, takes its body in pieces, then is sent
 * as a stream is. A request may ask for fewer redirects than the ceiling (`max_redirects`).
 */
import { z } from "zod";
import { AstridError } from "../../protocol/errors";
import { CAPSULE_HOST_CAPABILITIES } from "../../protocol/required-capabilities";
import { AddressGuard } from "../net/address-guard";
import { guardedFetch, MAX_REDIRECTS, type GuardedResponse } from "../net/guarded-fetch";
import { hostListCovers, normalizeUrlHost } from "../net/host-pattern";
import type { CapsuleRun } from "./capsule-run";
import type { HostCall, HostContext, HostService } from "./host-call";
import { HttpStreams, type ParsedRequest } from "./host-http-streams";
import { HttpUploads } from "./host-http-uploads";

/** Longest `timeout_ms`, and the default. */
export const MAX_HTTP_TIMEOUT_MS = 30_000;
/** Largest request or response body. */
export const MAX_HTTP_BODY_BYTES = 10 * 1024 * 1024;
/** Requests of one capsule in flight at once. */
export const MAX_HTTP_INFLIGHT = 4;
/** Requests of one capsule waiting for a slot; more are refused. */
export const MAX_HTTP_QUEUED = 64;

/** Methods a capsule may use (CONNECT and TRACE are not among them). */
const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const;
/** Request headers the host sets itself: a capsule may not (the URL names the host; undici frames the body). */
const RESERVED_HEADERS = new Set(["host", "connection", "content-length", "transfer-encoding", "keep-alive", "upgrade", "expect", "te", "trailer", "proxy-connection"]);
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

const RequestSchema = z.strictObject({
  url: z.string().min(1).max(8192, "is longer than 8192 characters"),
  method: z.string().transform((m) => m.toUpperCase()).pipe(z.enum(METHODS, { error: `must be one of ${METHODS.join(", ")}` })).optional(),
  headers: z
    .record(z.string().regex(TOKEN, "has a header name that is not an HTTP token"), z.string().refine((v) => !/[\r\n\0]/.test(v), "has a header value with CR, LF or NUL"))
    .refine((h) => Object.keys(h).length <= 100, "has more than 100 headers")
    .refine((h) => Object.entries(h).reduce((n, [k, v]) => n + k.length + v.length, 0) <= 64 * 1024, "are larger than 64 KiB")
    .refine((h) => !Object.keys(h).some((k) => RESERVED_HEADERS.has(k.toLowerCase()) || k.toLowerCase().startsWith("proxy-")), `may not set ${[...RESERVED_HEADERS].join(", ")} or proxy-*`)
    .optional(),
  body: z.string().optional(),
  timeout_ms: z.number().int("must be a whole number").min(1, "must be at least 1").max(MAX_HTTP_TIMEOUT_MS, `must be at most ${MAX_HTTP_TIMEOUT_MS}`).optional(),
  // Fewer redirects than the host's ceiling (0: none followed); a hop past it is ASTRID_ERR_HTTP_TOO_MANY_REDIRECTS.
  max_redirects: z.number().int("must be a whole number").min(0, "must be at least 0").max(MAX_REDIRECTS, `must be at most ${MAX_REDIRECTS}`).optional(),
});

/** One capsule run's slots: who is in flight, who waits, and how to abort them all. */
class Lane {
  inflight = 0;
  readonly waiting: Array<() => void> = [];
  readonly controllers = new Set<AbortController>();

  /** Resolves when a slot is free (or rejects when `signal` aborts first). */
  acquire(signal: AbortSignal, capsule: string): Promise<void> {
    if (this.inflight < MAX_HTTP_INFLIGHT) {
      this.inflight++;
      return Promise.resolve();
    }
    if (this.waiting.length >= MAX_HTTP_QUEUED) {
      return Promise.reject(new AstridError("ASTRID_ERR_HTTP_QUEUE_FULL", `${capsule}: ${MAX_HTTP_INFLIGHT} HTTP requests in flight and ${MAX_HTTP_QUEUED} waiting; wait for some to finish`));
    }
    return new Promise<void>((resolve, reject) => {
      const grant = () => {
        signal.removeEventListener("abort", onAbort);
        this.inflight++;
        resolve();
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(grant);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal.reason as Error);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(grant);
    });
  }

  release(): void {
    this.inflight--;
    this.waiting.shift()?.();
  }
}

/**
 * A deadline owned by one call: aborts its controller with ASTRID_ERR_TIMEOUT when it passes, cleared in one place.
 */
function startDeadline(controller: AbortController, ms: number, what: string): { clear(): void } {
  const timer = setTimeout(() => controller.abort(new AstridError("ASTRID_ERR_TIMEOUT", `${what}: no complete response within ${ms} ms (timeout_ms)`)), ms);
  return { clear: () => clearTimeout(timer) };
}

/** HttpService: the `http` family of capsule calls. */
export class HttpService implements HostService {
  private readonly guard: AddressGuard;
  private readonly lanes = new Map<CapsuleRun, Lane>();
  private readonly streams: HttpStreams;
  private readonly uploads: HttpUploads;
  private closed = false;

  constructor(private readonly host: HostContext) {
    // The seams exist only in a daemon started with ASTRID_TEST_FAULTS=1 (kernel/config.ts refuses them otherwise).
    this.guard = new AddressGuard({ seams: host.testFaults && host.netSeams ? host.netSeams : null });
    this.streams = new HttpStreams(this.guard, (run) => this.uploads.heldBy(run));
    this.uploads = new HttpUploads(this.streams, MAX_HTTP_BODY_BYTES);
  }

  async handle(call: HostCall, args: unknown[]): Promise<unknown> {
    if (this.closed) throw new AstridError("ASTRID_ERR_SHUTTING_DOWN", "the daemon is stopping");
    switch (call.call) {
      case "http.request":
        return this.request(call, this.parse(call, args[0]));
      case "http.stream_open": {
        const req = this.parse(call, args[0]);
        await this.checkHop(call, req.url, 0);
        return this.streams.open(call, req, (url, hop) => (hop === 0 ? Promise.resolve() : this.checkHop(call, url, hop, req.maxRedirects)));
      }
      case "http.stream_read":
        return this.streams.read(call, args[0]);
      case "http.stream_ready":
        return this.streams.ready(call, args[0]);
      case "http.stream_close":
        return this.uploads.close(call, args[0]) || this.streams.close(call, args[0]);
      case "http.upload_open": {
        // The body comes from upload_write; the host and its address are checked before anything is written.
        const req = { ...this.parse(call, args[0]), body: null };
        await this.checkHop(call, req.url, 0);
        await this.guard.vet(req.url.hostname);
        return this.uploads.open(call, req);
      }
      case "http.upload_write":
        return this.uploads.write(call, args[0], args[1]);
      case "http.upload_finish":
        // Every hop, the first included, is checked again when the request goes out.
        return this.uploads.finish(call, args[0], (req) => (url, hop) => this.checkHop(call, url, hop, req.maxRedirects));
      default:
        throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `unknown capsule call ${call.call}`);
    }
  }

  /** A request as the capsule sent it, validated: its URL parsed, its body within the cap. */
  private parse(call: HostCall, raw: unknown): ParsedRequest {
    const what = call.call;
    const parsed = RequestSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const where = issue.path.length > 0 ? issue.path.map(String).join(".") : "request";
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${what}: ${where} ${issue.message}`);
    }
    const req = parsed.data;
    let url: URL;
    try {
      url = new URL(req.url);
    } catch {
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${what}: ${JSON.stringify(req.url.slice(0, 200))} is not a valid URL`);
    }
    if (url.username !== "" || url.password !== "") {
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${what}: credentials in the URL are not sent; use an Authorization header`);
    }
    const body = req.body === undefined ? null : Buffer.from(req.body, "utf8");
    if (body && body.length > MAX_HTTP_BODY_BYTES) {
      throw new AstridError("ASTRID_ERR_HTTP_BODY_TOO_LARGE", `${what}: the request body is ${body.length} bytes, more than ${MAX_HTTP_BODY_BYTES} (10 MiB)`);
    }
    return { url, method: req.method ?? "GET", headers: req.headers ?? {}, body, timeoutMs: req.timeout_ms ?? MAX_HTTP_TIMEOUT_MS, maxRedirects: req.max_redirects ?? MAX_REDIRECTS };
  }

  private async request(call: HostCall, req: ParsedRequest): Promise<GuardedResponse> {
    const { url, method, body } = req;
    // Denials come before any wait: a refused request never takes a slot.
    await this.checkHop(call, url, 0);

    const lane = this.laneOf(call.run);
    const controller = new AbortController();
    const timeoutMs = req.timeoutMs;
    const deadline = startDeadline(controller, timeoutMs, `http.request ${method} ${url.origin}`);
    lane.controllers.add(controller);
    try {
      await lane.acquire(controller.signal, call.run.record.name);
      try {
        return await guardedFetch(
          { url, method, headers: req.headers, body, signal: controller.signal, maxBodyBytes: MAX_HTTP_BODY_BYTES },
          this.guard,
          (next, hop) => (hop === 0 ? Promise.resolve() : this.checkHop(call, next, hop, req.maxRedirects)),
        );
      } finally {
        lane.release();
      }
    } finally {
      deadline.clear();
      lane.controllers.delete(controller);
    }
  }

  /** Aborts the run's requests, in flight and queued, and closes its streams. */
  endRun(run: CapsuleRun): void {
    this.streams.endRun(run);
    this.uploads.endRun(run);
    const lane = this.lanes.get(run);
    if (!lane) return;
    this.lanes.delete(run);
    const reason = new AstridError("ASTRID_ERR_CAPSULE_UNAVAILABLE", `${run.record.name} stopped; its HTTP requests were aborted`);
    for (const controller of lane.controllers) controller.abort(reason);
  }

  /** Aborts every request; later calls are refused. */
  async close(): Promise<void> {
    this.closed = true;
    this.streams.closeAll();
    this.uploads.closeAll();
    const reason = new AstridError("ASTRID_ERR_SHUTTING_DOWN", "the daemon is stopping; HTTP requests were aborted");
    for (const lane of this.lanes.values()) for (const controller of lane.controllers) controller.abort(reason);
    this.lanes.clear();
  }

  private laneOf(run: CapsuleRun): Lane {
    let lane = this.lanes.get(run);
    if (!lane) this.lanes.set(run, (lane = new Lane()));
    return lane;
  }

  /**
   * The checks of one hop that are not about addresses: the scheme, the manifest's `net` and the principal's
   * `self:net:http` (through the gate, which audits denials), then the principal's `[network] egress` when set.
   */
  private async checkHop(call: HostCall, url: URL, hop: number, maxRedirects = MAX_REDIRECTS): Promise<void> {
    const via = hop === 0 ? "" : ` (redirect ${hop})`;
    if (hop > maxRedirects) {
      throw new AstridError("ASTRID_ERR_HTTP_TOO_MANY_REDIRECTS", `http.request: redirected to ${url.origin}, past the ${maxRedirects} redirects the request allows (max_redirects)`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `http.request${via}: only http: and https: URLs are allowed, not ${JSON.stringify(url.protocol)}`);
    }
    const host = normalizeUrlHost(url.hostname);
    const port = url.port !== "" ? Number(url.port) : url.protocol === "https:" ? 443 : 80;
    const named = host.includes(":") ? `[${host}]` : host;
    const target = url.port !== "" ? `${named}:${port}` : named;
    const capability = CAPSULE_HOST_CAPABILITIES.http;
    await call.permit({ kind: "net", target, allowedByManifest: hostListCovers(call.run.record.manifest.capabilities.net, host, port), capability });
    const egress = (await this.host.principals.profile(call.principal)).network.egress;
    if (egress.length > 0 && !hostListCovers(egress, host, port)) {
      const detail = `principal ${call.principal}'s [network] egress does not cover ${target}`;
      this.host.audit.capsule("denied", call.run.record.name, { call: call.call, principal: call.principal, capability, manifest: "net", target, detail });
      throw new AstridError("ASTRID_ERR_PERMISSION_DENIED", `${call.run.record.name}: http.request${via} of ${JSON.stringify(target)}: ${detail}`);
    }
  }
}
