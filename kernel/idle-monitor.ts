/**
 * Idle shutdown (reference §2.6). The daemon is idle when no client is connected and no loaded capsule declares
 * an `[[uplink]]`; once idle for the whole timeout (after the initial grace) it shuts down with reason
 * `idle_timeout` and exits 0.
 */
import type { DaemonConfig } from "./config";

/** Resolved idle settings. */
export interface IdleSettings {
  /** 0 disables idle shutdown (persistent mode only). */
  timeoutMs: number;
  graceMs: number;
  pollMs: number;
}

const EPHEMERAL = { timeoutMs: 30_000, graceMs: 5_000, pollMs: 1_000 };
/** Tests only (`ASTRID_TEST_EPHEMERAL_IDLE_SECS`): an ephemeral timeout short enough to watch, with no grace. */
function ephemeralSettings(testSecs: number | null | undefined): IdleSettings {
  if (testSecs === null || testSecs === undefined) return { ...EPHEMERAL };
  return { timeoutMs: testSecs * 1000, graceMs: 0, pollMs: Math.max(100, Math.floor((testSecs * 1000) / 4)) };
}
const PERSISTENT_POLL_MS = 15_000;

/**
 * Settings for a mode. Persistent mode takes `ASTRID_IDLE_TIMEOUT_SECS` (0 → never) and `ASTRID_IDLE_GRACE_SECS`
 * from the config (kernel/config.ts parses them); the poll never exceeds a quarter of the timeout, so a short
 * timeout is honoured. Ephemeral mode has the reference's fixed numbers.
 */
export function idleSettings(config: Pick<DaemonConfig, "ephemeral" | "idleTimeoutSecs" | "idleGraceSecs"> & { testEphemeralIdleSecs?: number | null }): IdleSettings {
  if (config.ephemeral) return ephemeralSettings(config.testEphemeralIdleSecs);
  const timeoutMs = config.idleTimeoutSecs * 1000;
  const graceMs = config.idleGraceSecs * 1000;
  const pollMs = timeoutMs === 0 ? PERSISTENT_POLL_MS : Math.min(PERSISTENT_POLL_MS, Math.max(100, Math.floor(timeoutMs / 4)));
  return { timeoutMs, graceMs, pollMs };
}

/** Polls `isIdle` and calls `onIdle` once the daemon has been idle for the timeout. */
export class IdleMonitor {
  private timer: NodeJS.Timeout | undefined;
  private idleSince: number | undefined;

  constructor(
    private settings: IdleSettings,
    private readonly isIdle: () => boolean,
    private readonly onIdle: () => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** Starts polling after the grace period. */
  start(): void {
    if (this.settings.timeoutMs === 0) return;
    this.timer = setTimeout(() => {
      this.check();
      this.timer = setInterval(() => this.check(), this.settings.pollMs);
    }, this.settings.graceMs);
  }

  /**
   * Switches to other settings (SetMode: an ephemeral daemon made persistent, or back): the idle time counted so
   * far is forgotten and the new grace starts now.
   */
  reconfigure(settings: IdleSettings): void {
    this.stop();
    this.idleSince = undefined;
    this.settings = settings;
    this.start();
  }

  /** Stops polling. */
  stop(): void {
    clearTimeout(this.timer);
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private check(): void {
    if (!this.isIdle()) {
      this.idleSince = undefined;
      return;
    }
    this.idleSince ??= this.now();
    if (this.now() - this.idleSince >= this.settings.timeoutMs) {
      this.stop();
      this.onIdle();
    }
  }
}
