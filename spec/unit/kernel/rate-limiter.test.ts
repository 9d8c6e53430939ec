import { METHOD_RATE_LIMITS, PRINCIPAL_FACTOR, RateLimiter } from "../../../kernel/rate-limiter";

describe("RateLimiter", () => {
  it("limits per caller and method in a sliding minute, and only counts admitted requests", () => {
    let now = 0;
    const limiter = new RateLimiter({ ReloadCapsules: 2 }, () => now);
    expect(limiter.admit("a", "p", "ReloadCapsules").ok).toBe(true);
    expect(limiter.admit("a", "p", "ReloadCapsules").ok).toBe(true);
    expect(limiter.admit("a", "p", "ReloadCapsules")).toEqual({ ok: false, limit: 2, scope: "caller" });
    expect(limiter.admit("b", "p", "ReloadCapsules").ok).toBe(true);
    expect(limiter.admit("a", "p", "GetStatus").ok).toBe(true);
    now = 59_999;
    expect(limiter.admit("a", "p", "ReloadCapsules").ok).toBe(false);
    now = 60_001;
    expect(limiter.admit("a", "p", "ReloadCapsules").ok).toBe(true);
  });

  it.each(Object.entries(METHOD_RATE_LIMITS))("%s: %i per caller, then refused", (method, limit) => {
    const limiter = new RateLimiter(METHOD_RATE_LIMITS, () => 0);
    for (let i = 0; i < limit; i++) expect(limiter.admit("conn:1", "default", method).ok).toBe(true);
    expect(limiter.admit("conn:1", "default", method)).toEqual({ ok: false, limit, scope: "caller" });
  });

  it("forgets a caller on disconnect, but reconnecting cannot beat the principal's ceiling", () => {
    const limiter = new RateLimiter({ Shutdown: 1 }, () => 0);
    limiter.admit("conn:1", "default", "Shutdown");
    limiter.forget("conn:1");
    expect(limiter.admit("conn:1", "default", "Shutdown").ok).toBe(true);
    for (let conn = 2; conn < PRINCIPAL_FACTOR; conn++) expect(limiter.admit(`conn:${conn}`, "default", "Shutdown").ok).toBe(true);
    expect(limiter.admit("conn:99", "default", "Shutdown")).toEqual({ ok: false, limit: PRINCIPAL_FACTOR, scope: "principal" });
    expect(limiter.admit("conn:99", "other", "Shutdown").ok).toBe(true);
  });

  it("keeps a capsule caller (`principal:<name>`) apart from its principal's ceiling", () => {
    const limiter = new RateLimiter({ ReloadCapsules: 2 }, () => 0);
    for (const conn of ["conn:1", "conn:2"]) for (let i = 0; i < 2; i++) limiter.admit(conn, "default", "ReloadCapsules");
    expect(limiter.admit("principal:default", "default", "ReloadCapsules").ok).toBe(true);
  });

  it("issue #9: release gives back an admission refused afterwards (no permission), for the caller and the principal", () => {
    const limiter = new RateLimiter({ ReloadCapsules: 1 }, () => 0);
    expect(limiter.admit("conn:1", "rita", "ReloadCapsules").ok).toBe(true);
    limiter.release("conn:1", "rita", "ReloadCapsules");
    expect(limiter.admit("conn:1", "rita", "ReloadCapsules").ok).toBe(true);
    expect(limiter.admit("conn:1", "rita", "ReloadCapsules").ok).toBe(false);
    limiter.release("conn:1", "rita", "GetStatus"); // unlimited: nothing to give back
  });
});
