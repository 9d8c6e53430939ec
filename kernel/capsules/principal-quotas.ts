/**
 * The quotas a capsule call is held to: those of the principal it acts for (reference: per capsule and principal).
 * The syscall gate and the event dispatch run synchronously on the hot path, so quotas are read from a cache that is
 * refreshed in the background; a principal seen for the first time gets the defaults until its profile is read.
 * Enforced here: `max_ipc_throughput_bytes` (a capsule's publishes for that principal per second) and
 * `max_timeout_secs` (a tool or interceptor call for it); `max_memory_bytes` of the owner caps its worker's heap.
 */
import { QUOTA_DEFAULTS, type Quotas } from "../../protocol/admin-request";

/** How long read quotas are reused before the profile is read again. */
const QUOTA_TTL_MS = 5000;

/** Where quotas come from (the principals registry). */
export interface QuotaSource {
  quotas(principal: string): Promise<Quotas>;
}

/** A cached view of principals' quotas. */
export class PrincipalQuotas {
  private readonly cache = new Map<string, { quotas: Quotas; at: number; refreshing: boolean }>();

  constructor(private readonly source: QuotaSource | undefined) {}

  /** The principal's quotas as last read (the defaults until then); refreshes them in the background when stale. */
  get(principal: string): Quotas {
    const entry = this.cache.get(principal);
    const now = Date.now();
    if (entry && (now - entry.at < QUOTA_TTL_MS || entry.refreshing)) return entry.quotas;
    const next = entry ?? { quotas: { ...QUOTA_DEFAULTS }, at: 0, refreshing: false };
    this.cache.set(principal, next);
    if (this.source) {
      next.refreshing = true;
      this.source.quotas(principal).then(
        (quotas) => Object.assign(next, { quotas, at: Date.now(), refreshing: false }),
        // An unreadable profile keeps the last quotas known (its requests are refused elsewhere, with the reason).
        () => Object.assign(next, { at: Date.now(), refreshing: false }),
      );
    }
    return next.quotas;
  }

  /** Reads the principal's quotas now (a capsule's start waits for its owner's). */
  async load(principal: string): Promise<Quotas> {
    if (!this.source) return { ...QUOTA_DEFAULTS };
    try {
      const quotas = await this.source.quotas(principal);
      this.cache.set(principal, { quotas, at: Date.now(), refreshing: false });
      return quotas;
    } catch {
      return this.get(principal);
    }
  }
}
