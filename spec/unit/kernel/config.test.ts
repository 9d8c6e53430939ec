import fs from "node:fs";
import path from "node:path";
import { envSchema, environmentHelp, loadDaemonConfig, MAX_TIMER_MS, renderDaemonConfig, type DaemonConfig, type DaemonFlags } from "../../../kernel/config";
import { resolveHome } from "../../../kernel/home";
import { isAstridError } from "../../../protocol/errors";

const ROOT = path.resolve(__dirname, "..", "..", "..");
const HOME = { ASTRID_HOME: "/srv/astrid" };

/** Loads a config from `env` (plus a valid home) and returns the error it throws, or fails the test. */
function refusal(env: NodeJS.ProcessEnv, flags: DaemonFlags = {}): { code: string; message: string } {
  try {
    loadDaemonConfig({ ...HOME, ...env }, flags);
  } catch (err) {
    expect(isAstridError(err)).toBe(true);
    return err as { code: string; message: string };
  }
  throw new Error(`accepted ${JSON.stringify(env)} ${JSON.stringify(flags)}`);
}

const load = (env: NodeJS.ProcessEnv, flags: DaemonFlags = {}) => loadDaemonConfig({ ...HOME, ...env }, flags);

/** Each whole-number variable with its range. */
const NUMBERS: Array<[name: string, min: number, max: number, key: keyof DaemonConfig]> = [
  ["ASTRID_IDLE_GRACE_SECS", 0, Math.floor(MAX_TIMER_MS / 1000), "idleGraceSecs"],
  ["ASTRID_MAX_CLIENTS", 1, 65_536, "maxClients"],
  ["ASTRID_CAPSULE_BOOT_WAIT_MS", 0, MAX_TIMER_MS, "capsuleBootWaitMs"],
  ["ASTRID_CAPSULE_READY_TIMEOUT_MS", 1, MAX_TIMER_MS, "capsuleReadyTimeoutMs"],
  ["ASTRID_CAPSULE_HOOK_TIMEOUT_MS", 1, MAX_TIMER_MS, "capsuleHookTimeoutMs"],
  ["ASTRID_CAPSULE_HANDLER_TIMEOUT_MS", 100, MAX_TIMER_MS, "capsuleHandlerTimeoutMs"],
  ["ASTRID_CAPSULE_RESTART_BACKOFF_MS", 1, 120_000, "capsuleRestartBackoffMs"],
  ["ASTRID_CAPSULE_MAX_HEAP_MB", 8, 65_536, "capsuleMaxHeapMb"],
  ["ASTRID_HOT_RELOAD_BURST", 1, 10_000, "hotReloadBurst"],
];

/** Text that is not a whole number written in digits. */
const NOT_WHOLE_NUMBERS = ["abc", "-1", "1e309", "Infinity", "-Infinity", "NaN", "", " ", " 5", "5 ", "1.5", "1e3", "0x10", "+5", "5abc", "١٢"];

describe("daemon config: defaults", () => {
  it("gives every setting its documented default", () => {
    expect(load({})).toEqual({
      home: "/srv/astrid",
      sessionId: "00000000-0000-0000-0000-000000000000",
      workspace: process.cwd(),
      ephemeral: false,
      verbose: false,
      watch: true,
      auditPermissions: false,
      quiet: false,
      logFormat: "pretty",
      maxClients: 256,
      idleTimeoutSecs: 300,
      idleGraceSecs: 30,
      capsuleBootWaitMs: 5000,
      capsuleReadyTimeoutMs: 10_000,
      capsuleHookTimeoutMs: 60_000,
      capsuleHandlerTimeoutMs: 30_000,
      capsuleRestartBackoffMs: 2000,
      clientStallTimeoutMs: 30_000,
      testUnconfinedCapsules: [],
      capsuleMaxHeapMb: 64,
      capsuleMaxPublishesPerSec: 50_000,
      hotReloadBurst: 30,
      mcpStartTimeoutMs: 30_000,
      mcpRequestTimeoutMs: 60_000,
      mcpRestartBackoffMs: 1000,
      mcpStopGraceMs: 5000,
      approvalTimeoutMs: 60_000,
      elicitTimeoutMs: 120_000,
      processSandbox: "auto",
      agentBaseUrl: null,
      agentApiKey: null,
      agentModel: "gpt-4o-mini",
      defaultAgent: null,
      agentTimeoutMs: 120_000,
      bundledCapsulesDir: null,
      testFaults: false,
      testEphemeralIdleSecs: null,
      testDns: {},
      testPublicAddresses: [],
    });
  });

  it("is frozen: read once at boot, never changed after", () => {
    const config = load({});
    expect(Object.isFrozen(config)).toBe(true);
    expect(() => {
      (config as { maxClients: number }).maxClients = 1;
    }).toThrow(TypeError);
  });

  it("takes the values it is given", () => {
    const config = load(
      {
        ASTRID_IDLE_GRACE_SECS: "0",
        ASTRID_MAX_CLIENTS: "300",
        ASTRID_CAPSULE_BOOT_WAIT_MS: "0",
        ASTRID_CAPSULE_HANDLER_TIMEOUT_MS: "1500",
        ASTRID_CAPSULE_MAX_HEAP_MB: "32",
        ASTRID_HOT_RELOAD_BURST: "007",
        ASTRID_BUNDLED_CAPSULES_DIR: "/opt/astrid//capsules/",
        ASTRID_TEST_FAULTS: "1",
      },
      { session: "6F1C2D3E4A5B4C6D8E9F0A1B2C3D4E5F", workspace: "sub/dir", ephemeral: true, verbose: true, watch: false },
    );
    expect(config).toMatchObject({
      idleGraceSecs: 0,
      maxClients: 300,
      capsuleBootWaitMs: 0,
      capsuleHandlerTimeoutMs: 1500,
      capsuleMaxHeapMb: 32,
      hotReloadBurst: 7,
      bundledCapsulesDir: "/opt/astrid/capsules/",
      testFaults: true,
      sessionId: "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f",
      workspace: path.resolve("sub/dir"),
      ephemeral: true,
      verbose: true,
      watch: false,
    });
  });

  it("--max-clients wins over ASTRID_MAX_CLIENTS", () => {
    expect(load({ ASTRID_MAX_CLIENTS: "300" }, { maxClients: "2" }).maxClients).toBe(2);
    expect(load({}, { maxClients: "2" }).maxClients).toBe(2);
  });

  it("renders as JSON that reads back as the same config", () => {
    const config = load({ ASTRID_CAPSULE_HANDLER_TIMEOUT_MS: "1500" });
    expect(JSON.parse(renderDaemonConfig(config))).toEqual(config);
  });
});

describe("daemon config: the one rule for bad values", () => {
  it.each(NUMBERS)("issue #8: %s refuses text that is not a whole number, naming itself, the value and the range", (name, min, max) => {
    for (const bad of NOT_WHOLE_NUMBERS) {
      const err = refusal({ [name]: bad });
      expect(err.code).toBe("ASTRID_ERR_CONFIG_INVALID");
      expect(err.message).toContain(`${name} must be a whole number of `);
      expect(err.message).toContain(`from ${min} to ${max}`);
      expect(err.message).toContain(`(got ${JSON.stringify(bad)})`);
    }
  });

  it.each(NUMBERS)("issue #8: %s takes its bounds and refuses one past either", (name, min, max, key) => {
    expect(load({ [name]: String(min) })[key]).toBe(min);
    expect(load({ [name]: String(max) })[key]).toBe(max);
    if (min > 0) expect(refusal({ [name]: String(min - 1) }).message).toContain(`${name} must be`);
    expect(refusal({ [name]: String(max + 1) }).message).toContain(`${name} must be`);
    expect(refusal({ [name]: "99999999999999999999999" }).code).toBe("ASTRID_ERR_CONFIG_INVALID");
  });

  it("issue #8: ASTRID_MAX_CLIENTS=0 is refused (a daemon that serves nobody)", () => {
    expect(refusal({ ASTRID_MAX_CLIENTS: "0" })).toMatchObject({
      code: "ASTRID_ERR_CONFIG_INVALID",
      message: expect.stringContaining('ASTRID_MAX_CLIENTS must be a whole number of clients from 1 to 65536 (got "0")'),
    });
  });

  it("issue #8: a bad value is refused even where a flag overrides it or the mode ignores it", () => {
    expect(refusal({ ASTRID_MAX_CLIENTS: "lots" }, { maxClients: "2" }).message).toContain("ASTRID_MAX_CLIENTS");
    expect(refusal({ ASTRID_IDLE_GRACE_SECS: "-1" }, { ephemeral: true }).message).toContain("ASTRID_IDLE_GRACE_SECS");
  });

  it("names every bad value at once", () => {
    const err = refusal({ ASTRID_CAPSULE_HANDLER_TIMEOUT_MS: "abc", ASTRID_MAX_CLIENTS: "0" }, { session: "x" });
    expect(err.message).toContain('ASTRID_CAPSULE_HANDLER_TIMEOUT_MS must be a whole number of milliseconds from 100 to 2147483647 (got "abc")');
    expect(err.message).toContain('ASTRID_MAX_CLIENTS must be a whole number of clients from 1 to 65536 (got "0")');
    expect(err.message).toContain('--session must be a UUID');
  });

  it("refuses bad flags the same way", () => {
    for (const bad of ["0", "-1", "1.5", "abc", ""]) {
      expect(refusal({}, { maxClients: bad })).toMatchObject({
        code: "ASTRID_ERR_CONFIG_INVALID",
        message: expect.stringContaining(`--max-clients must be a whole number of clients from 1 to 65536 (got ${JSON.stringify(bad)})`),
      });
    }
    for (const bad of ["not-a-uuid", "", "6f1c2d3e4a5b-4c6d-8e9f-0a1b2c3d4e5f"]) {
      expect(refusal({}, { session: bad }).message).toContain(`--session must be a UUID (8-4-4-4-12 hex digits, or 32 hex digits without hyphens) (got ${JSON.stringify(bad)})`);
    }
    expect(refusal({}, { workspace: "" }).message).toContain('--workspace must be a directory path (got "")');
  });

  it("ASTRID_PROCESS_SANDBOX is auto, bwrap or none", () => {
    for (const mode of ["auto", "bwrap", "none"] as const) expect(load({ ASTRID_PROCESS_SANDBOX: mode }).processSandbox).toBe(mode);
    for (const bad of ["", "BWRAP", "off", "firejail"]) {
      expect(refusal({ ASTRID_PROCESS_SANDBOX: bad })).toMatchObject({
        code: "ASTRID_ERR_CONFIG_INVALID",
        message: expect.stringContaining(`ASTRID_PROCESS_SANDBOX must be auto, bwrap or none (got ${JSON.stringify(bad)})`),
      });
    }
  });

  it("ASTRID_TEST_FAULTS is 0 or 1", () => {
    expect(load({ ASTRID_TEST_FAULTS: "0" }).testFaults).toBe(false);
    for (const bad of ["", "true", "yes", "2"]) {
      expect(refusal({ ASTRID_TEST_FAULTS: bad }).message).toContain(`ASTRID_TEST_FAULTS must be 0 or 1 (got ${JSON.stringify(bad)})`);
    }
  });

  it("ASTRID_BUNDLED_CAPSULES_DIR is an absolute path", () => {
    for (const bad of ["", "capsules", "./capsules"]) {
      expect(refusal({ ASTRID_BUNDLED_CAPSULES_DIR: bad }).message).toContain(`ASTRID_BUNDLED_CAPSULES_DIR must be an absolute path (got ${JSON.stringify(bad)})`);
    }
  });

  it("ASTRID_HOME follows the rule the CLI applies to it (kernel/home.ts), with its own code", () => {
    for (const env of [{ ASTRID_HOME: "relative/path" }, { ASTRID_HOME: "" }, { ASTRID_HOME: "/a/../b" }, { HOME: "rel" }, {}]) {
      let cli: unknown;
      try {
        resolveHome(env);
      } catch (err) {
        cli = err;
      }
      expect(cli).toMatchObject({ code: "ASTRID_ERR_HOME_INVALID" });
      expect(() => loadDaemonConfig(env)).toThrow(expect.objectContaining({ code: "ASTRID_ERR_HOME_INVALID", message: (cli as Error).message }));
    }
    expect(loadDaemonConfig({ HOME: "/home/u" }).home).toBe("/home/u/.astrid");
    expect(loadDaemonConfig({ ASTRID_HOME: "/x//y/" }).home).toBe(resolveHome({ ASTRID_HOME: "/x//y/" }).root);
  });
});

describe("daemon config: the ASTRID_IDLE_TIMEOUT_SECS exception", () => {
  it("keeps the reference's parse: whole seconds, 0 = never, anything unparsable = 300, never an error", () => {
    expect(load({ ASTRID_IDLE_TIMEOUT_SECS: "0" }).idleTimeoutSecs).toBe(0);
    expect(load({ ASTRID_IDLE_TIMEOUT_SECS: "2" }).idleTimeoutSecs).toBe(2);
    expect(load({ ASTRID_IDLE_TIMEOUT_SECS: " 7 " }).idleTimeoutSecs).toBe(7);
    expect(load({ ASTRID_IDLE_TIMEOUT_SECS: "999999999" }).idleTimeoutSecs).toBe(999_999_999);
    for (const unparsable of ["abc", "-1", "1e309", "Infinity", "", " ", "1.5", "1e3", "0x10", "1234567890"]) {
      expect(load({ ASTRID_IDLE_TIMEOUT_SECS: unparsable }).idleTimeoutSecs).toBe(300);
    }
  });
});

describe("daemon config: documentation in step", () => {
  const declared = Object.keys(envSchema.shape).filter((k) => k.startsWith("ASTRID_")).sort();

  it("--help lists every variable", () => {
    const help = environmentHelp();
    for (const name of declared) expect(help).toMatch(new RegExp(`^  ${name} `, "m"));
    expect(help.split("\n").every((line) => line.length <= 110)).toBe(true);
  });

  it("the README's environment table lists every variable, and only those", () => {
    const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
    const documented = [...readme.matchAll(/^\|\s*`(ASTRID_[A-Z_]+)`\s*\|/gm)].map((m) => m[1]).filter((n) => !n!.startsWith("ASTRID_ERR_")).sort();
    expect(documented).toEqual(declared);
  });

  it("no module under kernel/, workers/, capsule-host/ or protocol/ reads process.env but the config", () => {
    const offenders: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(full);
        else if (entry.name.endsWith(".ts") && /process\.env/.test(fs.readFileSync(full, "utf8"))) offenders.push(path.relative(ROOT, full));
      }
    };
    for (const dir of ["kernel", "workers", "capsule-host", "protocol"]) if (fs.existsSync(path.join(ROOT, dir))) walk(path.join(ROOT, dir));
    // home.ts keeps process.env as resolveHome's default for the CLI, which applies the same rule.
    expect(offenders.filter((f) => f !== path.join("kernel", "home.ts") && f !== path.join("kernel", "config.ts"))).toEqual([]);
  });
});
