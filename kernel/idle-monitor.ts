/**
 * Idle shutdown (reference §2.6). The daemon is idle when no client is connected and no loaded capsule declares
 * an `[[uplink]]`; once idle for the whole timeout (after the initial grace) it shuts down with reason
 * `idle_timeout` and exits 0.
 */
import { AstridError } from "../protocol/errors";

/** Resolved idle settings. */
export interface IdleSettings {
  /** 0 disables idle shutdown (persistent mode only). */
  timeoutMs: number;
  graceMs: number;
  pollMs: number;
}

const EPHEMERAL = { timeoutMs: 30_000, graceMs: 5_000, pollMs: 1_000 };
const PERSISTENT = { timeoutMs: 300_000, graceMs: 30_000, pollMs: 15_000 };

/**
 * Settings for a mode. Persistent mode reads `ASTRID_IDLE_TIMEOUT_SECS` (unparsable → 300, `0` → never) and
 * `ASTRID_IDLE_GRACE_SECS`; the poll never exceeds a quarter of the timeout, so a short timeout is honoured.
 */
export function idleSettings(ephemeral: boolean, env: NodeJS.ProcessEnv = process.env): IdleSettings {
  if (ephemeral) return { ...EPHEMERAL };
  // Whole seconds only, as the reference parses it (u64): "", " ", "1e3", "0x10", "1.5" are unparsable → 300 s.
  const raw = env.ASTRID_IDLE_TIMEOUT_SECS?.trim();
  const timeoutMs = raw !== undefined && /^\d{1,9}$/.test(raw) ? Number(raw) * 1000 : PERSISTENT.timeoutMs;
  let graceMs = PERSISTENT.graceMs;
  if (env.ASTRID_IDLE_GRACE_SECS !== undefined) {
    const grace = Number(env.ASTRID_IDLE_GRACE_SECS);
    if (!Number.isFinite(grace) || grace < 0) {
      throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", `ASTRID_IDLE_GRACE_SECS must be a number of seconds ≥ 0 (got ${JSON.stringify(env.ASTRID_IDLE_GRACE_SECS)})`);
    }
    graceMs = Math.round(grace * 1000);
  }
  const pollMs = timeoutMs === 0 ? PERSISTENT.pollMs : Math.min(PERSISTENT.pollMs, Math.max(100, Math.floor(timeoutMs / 4)));
  return { timeoutMs, graceMs, pollMs };
}

/** Polls `isIdle` and calls `onIdle` once the daemon has been idle for the timeout. */
export class IdleMonitor {
  private timer: NodeJS.Timeout | undefined;
  private idleSince: number | undefined;

  constructor(
    private readonly settings: IdleSettings,
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
