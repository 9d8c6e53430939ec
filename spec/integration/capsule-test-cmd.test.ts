/**
 * `astrid capsule test <dir>`: a capsule's own test against a real daemon on a temporary home — the scaffold's test
 * passes (its daemon half through `astrid-daemon/testing`), a broken capsule fails with exit 1 and names what
 * failed, a capsule that does not load fails before any test, a directory that is no capsule is a usage error
 * (exit 2), and no temporary home or daemon is left behind.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { CLI_BIN, cleanup, tempHome } from "../helpers/daemon";

afterAll(cleanup);

/** Runs `astrid` to completion with its own (daemon-less) home. */
function astrid(args: string[], cwd: string) {
  return spawnSync(process.execPath, [CLI_BIN, ...args], { cwd, env: { ...process.env, ASTRID_HOME: path.join(cwd, "home") }, encoding: "utf8", timeout: 120_000 });
}

/** The temporary homes `capsule test` makes (it must remove each). */
function testHomes(): string[] {
  return ["/tmp", os.tmpdir()].flatMap((dir) => fs.readdirSync(dir).filter((f) => f.startsWith("astrid-ct-")).map((f) => path.join(dir, f)));
}

/** A fresh workspace with a scaffolded JavaScript capsule `name`; returns its directory. */
function scaffold(name: string): { workspace: string; dir: string } {
  const workspace = tempHome();
  const r = astrid(["capsule", "new", name], workspace);
  expect(r.status).toBe(0);
  return { workspace, dir: path.join(workspace, ".astrid", "capsules", name) };
}

describe("astrid capsule test", () => {
  it("passes the scaffold's own test, its daemon tests included, and cleans up after itself", () => {
    const { workspace, dir } = scaffold("greeter");
    const before = testHomes();
    const json = astrid(["capsule", "test", dir, "--json"], workspace);
    expect(json.stderr).toBe("");
    expect(json.status).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ capsule: "greeter", passed: true, load: { state: "ready" }, tests: 5, pass: 5, fail: 0, skipped: 0, failures: [] });
    // The human form shows the runner's report, then the verdict; run from the capsule's own directory.
    const human = astrid(["capsule", "test", "."], dir);
    expect(human.status).toBe(0);
    expect(human.stdout).toMatch(/the daemon serves the tool/);
    expect(human.stdout).toMatch(/the \/greeter command answers/);
    expect(human.stdout).toMatch(/\nPASS greeter: 5 passed, 0 failed in [\d.]+ s against a daemon on a temporary home\n$/);
    expect(testHomes()).toEqual(before);
    // Without the test daemon (plain `node --test test/`), the daemon tests are skipped, not failed.
    const plain = spawnSync(process.execPath, ["--test", "test/"], { cwd: dir, encoding: "utf8", timeout: 30_000 });
    expect(plain.stdout).toMatch(/# pass 3\n# fail 0\n# cancelled 0\n# skipped 2/);
    expect(plain.status).toBe(0);
  }, 120_000);

  it("fails a capsule whose behaviour broke: exit 1, naming the failed tests (the daemon's answers included)", () => {
    const { workspace, dir } = scaffold("broken");
    const file = path.join(dir, "index.js");
    fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace("Hello, ${who}!", "Goodbye, ${who}!"));
    const before = testHomes();
    const r = astrid(["capsule", "test", dir], workspace);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/astrid: FAIL broken: 1 passed, 4 failed in [\d.]+ s\n/);
    expect(r.stderr).toMatch(/failed: the daemon serves the tool\n/);
    expect(r.stderr).toMatch(/failed: the \/broken command answers/);
    expect(r.stderr).toMatch(/\[ASTRID_ERR_CAPSULE_TEST_FAILED\]\n$/);
    const json = astrid(["capsule", "test", dir, "--json"], workspace);
    expect(json.status).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ capsule: "broken", passed: false, pass: 1, fail: 4 });
    expect(testHomes()).toEqual(before);
  }, 120_000);

  it("fails a capsule that does not load, before any test runs", () => {
    const { workspace, dir } = scaffold("crashy");
    fs.writeFileSync(path.join(dir, "index.js"), 'throw new Error("boom at load");\n');
    const r = astrid(["capsule", "test", dir, "--json"], workspace);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ capsule: "crashy", passed: false, load: { state: "failed", last_error: expect.stringMatching(/boom at load/) }, tests: 0 });
  }, 120_000);

  it("refuses a directory that is not a capsule, or has no test, as a usage error (exit 2)", () => {
    const workspace = tempHome();
    const r = astrid(["capsule", "test", workspace], workspace);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/is not a capsule directory \(no Capsule\.toml\) \[ASTRID_ERR_INVALID_ARGUMENT\]\n$/);
    const { dir } = scaffold("untested");
    fs.rmSync(path.join(dir, "test"), { recursive: true });
    const none = astrid(["capsule", "test", dir], workspace);
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/has no test: put files named \*\.test\.js under test\//);
    expect(astrid(["capsule", "test", dir, "--timeout", "0"], workspace).status).toBe(2);
  }, 60_000);

  it("is listed in astrid capsule --help", () => {
    const r = astrid(["capsule", "--help"], tempHome());
    expect(r.stdout).toMatch(/astrid capsule test <dir> +Run a capsule's own test/);
  });
});
