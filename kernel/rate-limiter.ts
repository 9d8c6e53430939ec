/**
 * Sliding-window rate limits for management methods (reference §5.2), kept per caller — the reference keeps one
 * global bucket, so one noisy client locks everyone out (its §11 item 5). Only admitted requests use budget.
 */

/** Requests allowed per 60 s, by method; methods not listed are unlimited. */
export const METHOD_RATE_LIMITS: Readonly<Record<string, number>> = {
  ReloadCapsules: 5,
  Shutdown: 1,
  InstallCapsule: 10,
  ApproveCapability: 10,
};

const WINDOW_MS = 60_000;

/** Per-(caller, method) sliding windows. */
export class RateLimiter {
  private readonly windows = new Map<string, number[]>();

  constructor(
    private readonly limits: Readonly<Record<string, number>> = METHOD_RATE_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Admits and records one request, or returns the limit it would exceed. */
  admit(caller: string, method: string): { ok: true } | { ok: false; limit: number } {
    const limit = this.limits[method];
    if (limit === undefined) return { ok: true };
    const key = `${caller}\u0000${method}`;
    const cutoff = this.now() - WINDOW_MS;
    const stamps = (this.windows.get(key) ?? []).filter((t) => t > cutoff);
    if (stamps.length >= limit) {
      this.windows.set(key, stamps);
      return { ok: false, limit };
    }
    stamps.push(this.now());
    this.windows.set(key, stamps);
    return { ok: true };
  }

  /** Forgets a caller (its connection closed). */
  forget(caller: string): void {
    for (const key of this.windows.keys()) if (key.startsWith(`${caller}\u0000`)) this.windows.delete(key);
  }
}
