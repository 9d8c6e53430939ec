/** Issue #8: one config — the real `astrid-daemon` refuses bad values before touching its home, and prints its config. */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { CLI_BIN, cleanup, DAEMON_BIN, tempHome } from "../helpers/daemon";

afterAll(cleanup);

/** The test runner's environment without any ASTRID_* setting of its own, plus `env`. */
function childEnv(home: string, env: Record<string, string>): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("ASTRID_")));
  return { ...clean, ASTRID_HOME: home, ...env };
}

function daemon(home: string, env: Record<string, string>, args: string[] = []) {
  return spawnSync(process.execPath, [DAEMON_BIN, ...args], { env: childEnv(home, env), encoding: "utf8", timeout: 20_000 });
}

/** What boot left under run/ (none of it may exist after a refused config). */
function runDir(home: string): string[] {
  const run = path.join(home, "run");
  return fs.existsSync(run) ? fs.readdirSync(run) : [];
}

describe("issue #8: a bad value stops the boot", () => {
  it.each([
    ["ASTRID_CAPSULE_HANDLER_TIMEOUT_MS", "abc"],
    ["ASTRID_CAPSULE_HANDLER_TIMEOUT_MS", "-1"],
    ["ASTRID_CAPSULE_HANDLER_TIMEOUT_MS", "1e309"],
    ["ASTRID_MAX_CLIENTS", "0"],
  ])("issue #8: %s=%s exits 1 naming the variable, the value and the code; nothing is left in run/", (name, value) => {
    const home = tempHome();
    const r = daemon(home, { [name]: value });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(`${name} must be a whole number of `);
    expect(r.stderr).toContain(`(got ${JSON.stringify(value)})`);
    expect(r.stderr.trim()).toMatch(/\[ASTRID_ERR_CONFIG_INVALID\]$/);
    expect(runDir(home)).toEqual([]);
    // Refused before anything was created: not even the layout.
    expect(fs.readdirSync(home)).toEqual([]);
  });

  it("issue #8: a bad flag is refused by the same rule", () => {
    const home = tempHome();
    const r = daemon(home, {}, ["--max-clients", "1.5"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--max-clients must be a whole number of clients from 1 to 65536 \(got "1\.5"\).*\[ASTRID_ERR_CONFIG_INVALID\]/);
    expect(runDir(home)).toEqual([]);
  });

  it("issue #8: `astrid start` reports a bad value itself instead of a daemon that exited prematurely", () => {
    const home = tempHome();
    const r = spawnSync(process.execPath, [CLI_BIN, "start"], { env: childEnv(home, { ASTRID_MAX_CLIENTS: "0" }), encoding: "utf8", timeout: 20_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/ASTRID_MAX_CLIENTS must be .*\(got "0"\).*\[ASTRID_ERR_CONFIG_INVALID\]/);
    expect(runDir(home)).toEqual([]);
  });
});

describe("issue #8: --print-config", () => {
  it("prints the defaults as JSON, exits 0 and boots nothing", () => {
    const home = tempHome();
    const r = daemon(home, {}, ["--print-config"]);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toEqual({
      home,
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
      bundledCapsulesDir: null,
      testFaults: false,
      testEphemeralIdleSecs: null,
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
      testDns: {},
      testPublicAddresses: [],
    });
    expect(fs.readdirSync(home)).toEqual([]);
  });

  it("never prints the model endpoint's key", () => {
    const home = tempHome();
    const r = daemon(home, { OPENAI_API_KEY: "sk-very-secret-42", OPENAI_BASE_URL: "http://127.0.0.1:11434/v1/" }, ["--print-config"]);
    expect(r.status).toBe(0);
    expect(r.stdout).not.toContain("sk-very-secret-42");
    expect(JSON.parse(r.stdout)).toMatchObject({ agentApiKey: "(set, hidden)", agentBaseUrl: "http://127.0.0.1:11434/v1" });
  });

  it("prints overrides from the environment and the flags", () => {
    const home = tempHome();
    const workspace = tempHome();
    const r = daemon(
      home,
      { ASTRID_CAPSULE_HANDLER_TIMEOUT_MS: "1500", ASTRID_MAX_CLIENTS: "300", ASTRID_IDLE_TIMEOUT_SECS: "soon", ASTRID_BUNDLED_CAPSULES_DIR: workspace },
      ["--print-config", "-s", "6F1C2D3E4A5B4C6D8E9F0A1B2C3D4E5F", "-w", workspace, "--ephemeral", "--no-watch", "--max-clients", "9"],
    );
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      home,
      sessionId: "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f",
      workspace,
      ephemeral: true,
      watch: false,
      maxClients: 9,
      capsuleHandlerTimeoutMs: 1500,
      // The documented exception: unparsable means the default, not an error.
      idleTimeoutSecs: 300,
      bundledCapsulesDir: workspace,
    });
  });

  it("with a bad value prints the error and exits 1", () => {
    const home = tempHome();
    const r = daemon(home, { ASTRID_CAPSULE_HANDLER_TIMEOUT_MS: "Infinity" }, ["--print-config"]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/ASTRID_CAPSULE_HANDLER_TIMEOUT_MS must be .*\(got "Infinity"\).*\[ASTRID_ERR_CONFIG_INVALID\]/);
  });
});
