import { RateLimiter } from "../../../kernel/rate-limiter";

describe("RateLimiter", () => {
  it("limits per caller and method in a sliding minute, and only counts admitted requests", () => {
    let now = 0;
    const limiter = new RateLimiter({ ReloadCapsules: 2 }, () => now);
    expect(limiter.admit("a", "ReloadCapsules").ok).toBe(true);
    expect(limiter.admit("a", "ReloadCapsules").ok).toBe(true);
    expect(limiter.admit("a", "ReloadCapsules")).toEqual({ ok: false, limit: 2 });
    expect(limiter.admit("b", "ReloadCapsules").ok).toBe(true);
    expect(limiter.admit("a", "GetStatus").ok).toBe(true);
    now = 59_999;
    expect(limiter.admit("a", "ReloadCapsules").ok).toBe(false);
    now = 60_001;
    expect(limiter.admit("a", "ReloadCapsules").ok).toBe(true);
  });

  it("forgets a caller", () => {
    const limiter = new RateLimiter({ Shutdown: 1 }, () => 0);
    limiter.admit("conn:1", "Shutdown");
    limiter.forget("conn:1");
    expect(limiter.admit("conn:1", "Shutdown").ok).toBe(true);
  });
});
