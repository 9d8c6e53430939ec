import { loadDaemonConfig } from "../../../kernel/config";
import { IdleMonitor, idleSettings } from "../../../kernel/idle-monitor";

/** Idle settings from an environment, through the config as the daemon reads it. */
const settings = (env: NodeJS.ProcessEnv, ephemeral = false) => idleSettings(loadDaemonConfig({ ASTRID_HOME: "/x", ...env }, { ephemeral }));

describe("idle settings (reference §2.6)", () => {
  it("uses the fixed ephemeral numbers whatever the environment says", () => {
    expect(settings({ ASTRID_IDLE_TIMEOUT_SECS: "1" }, true)).toEqual({ timeoutMs: 30_000, graceMs: 5_000, pollMs: 1_000 });
  });

  it("reads ASTRID_IDLE_TIMEOUT_SECS in persistent mode; unparsable means 300 s; 0 disables", () => {
    expect(settings({})).toEqual({ timeoutMs: 300_000, graceMs: 30_000, pollMs: 15_000 });
    expect(settings({ ASTRID_IDLE_TIMEOUT_SECS: "soon" }).timeoutMs).toBe(300_000);
    expect(settings({ ASTRID_IDLE_TIMEOUT_SECS: "0" }).timeoutMs).toBe(0);
    for (const bad of ["", " ", "1e3", "0x10", "1.5", "-1", "12abc"]) {
      expect(settings({ ASTRID_IDLE_TIMEOUT_SECS: bad }).timeoutMs).toBe(300_000);
    }
    expect(settings({ ASTRID_IDLE_TIMEOUT_SECS: " 7 " }).timeoutMs).toBe(7000);
    expect(settings({ ASTRID_IDLE_TIMEOUT_SECS: "2", ASTRID_IDLE_GRACE_SECS: "0" })).toEqual({ timeoutMs: 2000, graceMs: 0, pollMs: 500 });
  });

  it("rejects a bad grace value with a coded error", () => {
    expect(() => settings({ ASTRID_IDLE_GRACE_SECS: "-1" })).toThrow(expect.objectContaining({ code: "ASTRID_ERR_CONFIG_INVALID" }));
  });
});

describe("IdleMonitor", () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it("fires after grace + a full idle timeout, and a busy moment restarts the clock", () => {
    let idle = true;
    let fired = 0;
    const monitor = new IdleMonitor({ timeoutMs: 1000, graceMs: 500, pollMs: 100 }, () => idle, () => fired++, () => Date.now());
    monitor.start();
    jest.advanceTimersByTime(1000);
    idle = false;
    jest.advanceTimersByTime(200);
    idle = true;
    jest.advanceTimersByTime(900);
    expect(fired).toBe(0);
    jest.advanceTimersByTime(300);
    expect(fired).toBe(1);
    jest.advanceTimersByTime(5000);
    expect(fired).toBe(1);
  });

  it("never fires when the timeout is 0", () => {
    let fired = 0;
    const monitor = new IdleMonitor({ timeoutMs: 0, graceMs: 0, pollMs: 100 }, () => true, () => fired++);
    monitor.start();
    jest.advanceTimersByTime(60_000);
    expect(fired).toBe(0);
  });
});
