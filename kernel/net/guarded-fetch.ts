/**
 * One outbound HTTP exchange for a capsule, redirects included, where every hop is checked before it connects: the
 * caller's permission check (scheme, manifest, principal), then the address guard, whose vetted address the
 * connection is pinned to (undici's `connect.lookup` answers with it, so no second DNS query happens between the
 * check and the connect). Redirects are followed by hand, at most 5; the response body is read up to a cap and
 * aborted past it.
 */
import type { Agent } from "undici";
import { AstridError, isAstridError } from "../../protocol/errors";
import type { AddressGuard, VettedAddress } from "./address-guard";

/** Most redirects followed. */
export const MAX_REDIRECTS = 5;

/** What one exchange is asked to do. */
export interface GuardedRequest {
  url: URL;
  method: string;
  headers: Record<string, string>;
  body: Buffer | null;
  /** Aborts the exchange; its reason (an AstridError: a timeout, a cancelled run) is what the caller sees. */
  signal: AbortSignal;
  /** Largest response body, in bytes. */
  maxBodyBytes: number;
}

/** The answer a capsule gets. */
export interface GuardedResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** The body decoded as UTF-8 (bytes that are not UTF-8 become U+FFFD). */
  body: string;
}

/** A response whose body is still to be read (`guardedOpen`): the caller reads `body` and must `close()` it. */
export interface GuardedStream {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** The URL that answered (after redirects). */
  url: URL;
  body: AsyncIterable<Buffer>;
  /** Drops the body and the connection; idempotent. */
  close(): void;
}

/** The checks of one hop that are not about addresses: scheme, manifest and principal. Throws to refuse. */
export type HopCheck = (url: URL, hop: number) => Promise<void>;

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Headers that carry credentials: not sent on to another origin after a redirect (as browsers do). */
const CREDENTIAL_HEADERS = ["authorization", "cookie", "proxy-authorization"];

/** Carries out `req`, checking each hop with `check` and `guard`, and reads the whole body (up to `maxBodyBytes`). */
export async function guardedFetch(req: GuardedRequest, guard: AddressGuard, check: HopCheck): Promise<GuardedResponse> {
  const open = await guardedOpen(req, guard, check);
  try {
    return { status: open.status, headers: open.headers, body: await readBody(open, req.maxBodyBytes) };
  } catch (err) {
    throw translate(err, req.signal, open.url);
  } finally {
    open.close();
  }
}

/**
 * Carries out `req` up to the final response's headers, checking each hop with `check` and `guard`; its body is
 * the caller's to read (`maxBodyBytes` does not apply) and to close. `req.signal` still aborts the body.
 */
export async function guardedOpen(req: GuardedRequest, guard: AddressGuard, check: HopCheck): Promise<GuardedStream> {
  let url = req.url;
  let method = req.method;
  let body = req.body;
  let headers = { ...req.headers };
  for (let hop = 0; ; hop++) {
    await check(url, hop);
    const vetted = await abortable(guard.vet(url.hostname), req.signal);
    const agent = pinnedAgent(vetted);
    let handedOver = false;
    try {
      const res = await send(agent, url, method, headers, body, req.signal);
      const location = REDIRECTS.has(res.statusCode) ? res.headers.location : undefined;
      if (typeof location === "string" && location !== "") {
        res.body.destroy();
        if (hop >= MAX_REDIRECTS) {
          throw new AstridError("ASTRID_ERR_HTTP_TOO_MANY_REDIRECTS", `${req.url.href}: more than ${MAX_REDIRECTS} redirects (the last to ${location.slice(0, 200)})`);
        }
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          throw new AstridError("ASTRID_ERR_HTTP_FAILED", `${url.href} redirected to an invalid URL: ${JSON.stringify(location.slice(0, 200))}`);
        }
        // 303, and 301/302 after a POST, turn into a GET without a body (what browsers and fetch do).
        if (res.statusCode === 303 ? method !== "HEAD" : (res.statusCode === 301 || res.statusCode === 302) && method === "POST") {
          method = "GET";
          body = null;
          headers = Object.fromEntries(Object.entries(headers).filter(([name]) => !name.toLowerCase().startsWith("content-")));
        }
        if (next.origin !== url.origin) headers = Object.fromEntries(Object.entries(headers).filter(([name]) => !CREDENTIAL_HEADERS.includes(name.toLowerCase())));
        url = next;
        continue;
      }
      handedOver = true;
      let closed = false;
      return {
        status: res.statusCode,
        headers: flatten(res.headers),
        url,
        body: res.body as AsyncIterable<Buffer>,
        close: () => {
          if (closed) return;
          closed = true;
          res.body.destroy();
          agent.destroy().catch(() => undefined);
        },
      };
    } catch (err) {
      throw translate(err, req.signal, url);
    } finally {
      if (!handedOver) agent.destroy().catch(() => undefined);
    }
  }
}

/** An agent whose every connection goes to the vetted address, whatever DNS would say now. */
function pinnedAgent(vetted: VettedAddress): Agent {
  // undici (110 modules) loads with a capsule's first HTTP request, not at every boot.
  const { Agent } = require("undici") as typeof import("undici");
  return new Agent({
    connections: 1,
    pipelining: 1,
    // Our own deadline governs; undici's (300 s) would only hide it.
    headersTimeout: 0,
    bodyTimeout: 0,
    connect: {
      // net.connect asks this for the URL's host (never called for an IP literal, which was vetted as it is).
      lookup: (_hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
        if (options?.all) callback(null, [{ address: vetted.address, family: vetted.family }]);
        else callback(null, vetted.address, vetted.family);
      },
    } as Agent.Options["connect"],
  });
}

type Answer = Awaited<ReturnType<typeof import("undici").request>>;

async function send(agent: Agent, url: URL, method: string, headers: Record<string, string>, body: Buffer | null, signal: AbortSignal): Promise<Answer> {
  const { request } = require("undici") as typeof import("undici");
  const res = await request(url, { dispatcher: agent, method: method as "GET", headers, body, signal });
  // A body we destroy (a redirect, a cap, an abort, the agent's teardown) emits 'error'; unheard, that would crash
  // the daemon. Readers still see the error through the async iterator.
  res.body.on("error", () => undefined);
  return res;
}

async function readBody(res: GuardedStream, max: number): Promise<string> {
  const declared = Number(res.headers["content-length"]);
  const tooLarge = () => new AstridError("ASTRID_ERR_HTTP_BODY_TOO_LARGE", `${res.url.href}: the response body is larger than ${max} bytes (10 MiB); it was aborted`);
  if (Number.isFinite(declared) && declared > max) {
    res.close();
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += chunk.length;
    if (size > max) {
      res.close();
      throw tooLarge();
    }
    chunks.push(chunk);
  }
  return new TextDecoder("utf-8").decode(Buffer.concat(chunks, size));
}

function flatten(headers: Answer["headers"]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    out[name.toLowerCase()] = Array.isArray(value) ? value.join(", ") : String(value);
  }
  return out;
}

/** Rejects with the signal's reason as soon as it aborts (a DNS lookup cannot be cancelled, only abandoned). */
function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Our own errors pass; an abort becomes its reason; anything else from the network is ASTRID_ERR_HTTP_FAILED. */
export function translate(err: unknown, signal: AbortSignal, url: URL): unknown {
  if (isAstridError(err)) return err;
  if (signal.aborted && isAstridError(signal.reason)) return signal.reason;
  const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  const code = e.code ?? e.cause?.code;
  const reason = e.cause?.message ?? e.message;
  return new AstridError("ASTRID_ERR_HTTP_FAILED", `${url.href}: ${reason}${code && !reason.includes(code) ? ` (${code})` : ""}`, { cause: err });
}
