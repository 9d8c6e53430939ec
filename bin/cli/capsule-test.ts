/**
 * `astrid capsule test <dir> [--json] [--bundled] [--timeout S]`: runs a capsule's own tests against a real daemon.
 * A daemon starts on a temporary home serving a temporary workspace that holds a copy of the capsule (and, unless
 * `--bundled`, no other capsule than the socket policy), the capsule must load, and then Node's test runner runs
 * the capsule's `test/*.test.js` with `astrid-daemon/testing` resolvable and pointed at that daemon. The temporary
 * home goes afterwards, whatever happened. Exit 0 when everything passed, 1 when the capsule did not load or a test
 * failed, 2 for a directory that is not a capsule or has no test.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { MANIFEST_FILE, parseManifest } from "../../protocol/capsule-manifest";
import { DaemonClient } from "../../protocol/client";
import { AstridError } from "../../protocol/errors";
import { TEST_CAPSULE_ENV } from "../../client/testing-env";
import { DAEMON_SCRIPT } from "./daemon-control";
import { UsageError } from "./usage";

/** The package this CLI belongs to (its bundled capsules, and what `astrid-daemon/testing` resolves to). */
const PACKAGE_ROOT = path.resolve(__dirname, "..", "..", "..");
const TEST_FILE = /\.test\.[cm]?js$/;
/** How long the test daemon may take to serve, and the capsule to settle (ready or failed). */
const BOOT_DEADLINE_MS = 30_000;

/** What `astrid capsule test` found. */
export interface CapsuleTestOutcome {
  capsule: string;
  dir: string;
  passed: boolean;
  /** The capsule's state in the test daemon, and why it failed to load. */
  load: { state: string; last_error?: string };
  tests: number;
  pass: number;
  fail: number;
  skipped: number;
  /** The names of the failed tests. */
  failures: string[];
  ms: number;
}

/** Options of one run. */
export interface CapsuleTestOptions {
  bundled: boolean;
  timeoutSecs: number;
  /** Where the runner's human report goes (stdout; nothing with --json). */
  report?: NodeJS.WritableStream;
}

/** Runs the test of the capsule in `dir`; usage errors for a directory that is no capsule or has no test. */
export async function testCapsule(dir: string, options: CapsuleTestOptions): Promise<CapsuleTestOutcome> {
  const source = path.resolve(dir);
  const manifestFile = path.join(source, MANIFEST_FILE);
  if (!fs.existsSync(manifestFile)) throw new UsageError(`${source} is not a capsule directory (no ${MANIFEST_FILE})`);
  const files = testFiles(path.join(source, "test"));
  if (files.length === 0) throw new UsageError(`${source} has no test: put files named *.test.js under test/ (astrid capsule new writes one)`);
  const { manifest } = parseManifest(fs.readFileSync(manifestFile, "utf8"), source, (f) => fs.existsSync(f));
  const name = manifest.package.name;
  const started = performance.now();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir().length <= 16 ? os.tmpdir() : "/tmp", "astrid-ct-")); // short: socket paths stay under 108 bytes
  let daemon: ChildProcess | undefined;
  const stop = () => daemon?.kill("SIGTERM");
  process.once("SIGINT", stop);
  try {
    const home = path.join(tmp, "h");
    const workspace = path.join(tmp, "ws");
    fs.cpSync(source, path.join(workspace, ".astrid", "capsules", name), {
      recursive: true,
      filter: (file) => !["node_modules", ".git"].includes(path.basename(file)),
    });
    const env: NodeJS.ProcessEnv = { ...process.env, ASTRID_HOME: home, ASTRID_IDLE_TIMEOUT_SECS: "0" };
    if (!options.bundled) {
      const bundle = path.join(tmp, "bundled");
      fs.cpSync(path.join(PACKAGE_ROOT, "capsules", "astrid-capsule-cli"), path.join(bundle, "astrid-capsule-cli"), { recursive: true });
      env.ASTRID_BUNDLED_CAPSULES_DIR = bundle;
    }
    // Prompts in the test's sessions go to the capsule under test when it is an agent.
    if (manifest.package.agent === true) env.ASTRID_DEFAULT_AGENT = name;
    daemon = spawn(process.execPath, [DAEMON_SCRIPT, "--workspace", workspace, "--no-watch"], { env, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    daemon.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    const exited = new Promise<void>((resolve) => daemon!.once("exit", () => resolve()));
    const load = await settle(home, name, daemon, () => stderr);
    const outcome: CapsuleTestOutcome = { capsule: name, dir: source, passed: false, load, tests: 0, pass: 0, fail: 0, skipped: 0, failures: [], ms: 0 };
    if (load.state === "ready") {
      Object.assign(outcome, await runTests(source, files, name, home, tmp, options));
      outcome.passed = outcome.fail === 0 && outcome.tests > 0;
    }
    outcome.ms = Math.round(performance.now() - started);
    daemon.kill("SIGTERM");
    const killer = setTimeout(() => daemon?.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(killer);
    return outcome;
  } finally {
    process.removeListener("SIGINT", stop);
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) daemon.kill("SIGKILL");
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** The test files under `dir` (recursively), sorted. */
function testFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[])
    .filter((f) => TEST_FILE.test(f) && !f.split(path.sep).includes("node_modules"))
    .map((f) => path.join(dir, f))
    .sort();
}

/** Waits for the test daemon to serve and the capsule to be ready or failed. */
async function settle(home: string, name: string, daemon: ChildProcess, stderr: () => string): Promise<{ state: string; last_error?: string }> {
  const deadline = Date.now() + BOOT_DEADLINE_MS;
  const run = path.join(home, "run");
  while (!(fs.existsSync(path.join(run, "system.token")) && fs.existsSync(path.join(run, "system.ready")))) {
    if (daemon.exitCode !== null || daemon.signalCode !== null) throw new AstridError("ASTRID_ERR_CAPSULE_TEST_FAILED", `the test daemon exited before it served: ${stderr().trim()}`);
    if (Date.now() > deadline) throw new AstridError("ASTRID_ERR_CAPSULE_TEST_FAILED", `the test daemon did not serve within ${BOOT_DEADLINE_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const client = await DaemonClient.connect({ socketPath: path.join(run, "system.sock"), token: fs.readFileSync(path.join(run, "system.token"), "utf8") });
  try {
    for (;;) {
      const meta = (await client.request("GetCapsuleMetadata")).data as Array<{ name: string; state: string; last_error?: string }>;
      const found = meta.find((m) => m.name === name);
      if (found && (found.state === "ready" || found.state === "failed")) {
        return { state: found.state, ...(found.last_error !== undefined ? { last_error: found.last_error } : {}) };
      }
      if (Date.now() > deadline) return { state: found?.state ?? "not_loaded", last_error: `it did not settle within ${BOOT_DEADLINE_MS / 1000} s` };
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await client.close();
  }
}

/**
 * Node's test runner over `files` in the capsule's directory: `astrid-daemon/testing` resolves to this package
 * (NODE_PATH; a capsule's own node_modules comes first), ASTRID_HOME is the test daemon's. A TAP copy of the
 * report gives the counts; the human report goes to `options.report`.
 */
async function runTests(dir: string, files: string[], name: string, home: string, tmp: string, options: CapsuleTestOptions) {
  const modules = path.join(tmp, "node_modules");
  fs.mkdirSync(modules);
  fs.symlinkSync(PACKAGE_ROOT, path.join(modules, "astrid-daemon"), "dir");
  const tap = path.join(tmp, "report.tap");
  const reporters = ["--test-reporter=tap", `--test-reporter-destination=${tap}`];
  if (options.report) reporters.push("--test-reporter=spec", "--test-reporter-destination=stdout");
  const nodePath = [modules, ...(process.env.NODE_PATH ? [process.env.NODE_PATH] : [])].join(path.delimiter);
  const child = spawn(process.execPath, ["--test", ...reporters, ...files], {
    cwd: dir,
    env: { ...process.env, ASTRID_HOME: home, [TEST_CAPSULE_ENV]: name, NODE_PATH: nodePath },
    stdio: ["ignore", options.report ? "pipe" : "ignore", options.report ? "pipe" : "ignore"],
  });
  if (options.report) {
    child.stdout!.pipe(options.report, { end: false });
    child.stderr!.pipe(process.stderr, { end: false });
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, options.timeoutSecs * 1000);
  await new Promise((resolve) => child.once("exit", resolve));
  clearTimeout(timer);
  const text = fs.existsSync(tap) ? fs.readFileSync(tap, "utf8") : "";
  const count = (key: string) => Number(new RegExp(`^# ${key} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
  const failures = [...text.matchAll(/^not ok \d+ - (.*)$/gm)].map((m) => m[1]!);
  if (timedOut) failures.push(`(the run passed --timeout ${options.timeoutSecs} s and was stopped)`);
  const fail = count("fail") + count("cancelled") + (timedOut ? 1 : 0);
  // A runner that failed without a report (a file that would not load) counts as a failure too.
  const broken = child.exitCode !== 0 && fail === 0;
  return { tests: count("tests"), pass: count("pass"), fail: broken ? 1 : fail, skipped: count("skipped"), failures: broken ? ["(the test runner failed; see its output)"] : failures };
}

/** The closing line of a human run. */
export function describeOutcome(o: CapsuleTestOutcome): string {
  if (o.load.state !== "ready") return `FAIL ${o.capsule}: it did not load in the test daemon (${o.load.state}): ${o.load.last_error ?? "no reason given"}`;
  const counts = `${o.pass} passed, ${o.fail} failed${o.skipped > 0 ? `, ${o.skipped} skipped` : ""} in ${(o.ms / 1000).toFixed(1)} s`;
  if (o.passed) return `PASS ${o.capsule}: ${counts} against a daemon on a temporary home`;
  return `FAIL ${o.capsule}: ${o.tests === 0 ? "no test ran" : counts}${o.failures.length > 0 ? `\n  failed: ${o.failures.join("\n  failed: ")}` : ""}`;
}
