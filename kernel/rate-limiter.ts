/**
 * Sliding-window rate limits for management methods (reference §5.2), kept per caller — the reference keeps one
 * global bucket, so one noisy client locks everyone out (its §11 item 5). A caller is a connection, so a client
 * that reconnects gets a fresh bucket; a ceiling per principal (PRINCIPAL_FACTOR × the per-caller limit) bounds
 * what reconnecting can win. Only admitted requests use budget.
 */

/** Requests allowed per 60 s and caller, by method; methods not listed are unlimited. */
export const METHOD_RATE_LIMITS: Readonly<Record<string, number>> = {
  ReloadCapsules: 5,
  Shutdown: 1,
  InstallCapsule: 10,
  RemoveCapsule: 10,
  ApproveCapability: 10,
};

/** All callers of one principal together get this many times a caller's limit. */
export const PRINCIPAL_FACTOR = 4;

const WINDOW_MS = 60_000;

/** The refusal: the limit hit, and whose it is. */
export type Refusal = { ok: false; limit: number; scope: "caller" | "principal" };

/** Per-(caller, method) and per-(principal, method) sliding windows. */
export class RateLimiter {
  private readonly windows = new Map<string, number[]>();

  constructor(
    private readonly limits: Readonly<Record<string, number>> = METHOD_RATE_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Admits and records one request of `caller` (acting for `principal`), or says which limit it would exceed. */
  admit(caller: string, principal: string, method: string): { ok: true } | Refusal {
    const limit = this.limits[method];
    if (limit === undefined) return { ok: true };
    const cutoff = this.now() - WINDOW_MS;
    const own = this.window(`${caller}\u0000${method}`, cutoff);
    if (own.length >= limit) return { ok: false, limit, scope: "caller" };
    // Its own key space: a capsule's caller key is `principal:<name>`, which must not share this window.
    const shared = this.window(`\u0001ceiling:${principal}\u0000${method}`, cutoff);
    if (shared.length >= limit * PRINCIPAL_FACTOR) return { ok: false, limit: limit * PRINCIPAL_FACTOR, scope: "principal" };
    own.push(this.now());
    shared.push(this.now());
    return { ok: true };
  }

  /** Gives back what `admit` just recorded: a request refused after admission (no permission) uses no budget. */
  release(caller: string, principal: string, method: string): void {
    if (this.limits[method] === undefined) return;
    this.windows.get(`${caller}\u0000${method}`)?.pop();
    this.windows.get(`\u0001ceiling:${principal}\u0000${method}`)?.pop();
  }

  /** Forgets a caller (its connection closed); its principal's window stays. */
  forget(caller: string): void {
    for (const key of this.windows.keys()) if (key.startsWith(`${caller}\u0000`)) this.windows.delete(key);
  }

  private window(key: string, cutoff: number): number[] {
    const stamps = (this.windows.get(key) ?? []).filter((t) => t > cutoff);
    this.windows.set(key, stamps);
    return stamps;
  }
}
