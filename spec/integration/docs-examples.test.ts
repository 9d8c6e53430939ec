/**
 * The docs cannot drift: the shell examples of the README's tour and of docs/capsules.md, and the capsule that guide
 * shows (its Capsule.toml and module fences), are extracted from the Markdown and run as written against a real
 * daemon with the bundled capsules, in a temp ASTRID_HOME and a temp workspace, through an `astrid` on PATH.
 * Each block must exit 0 and print what the prose around it says it prints.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { CLI_BIN, ROOT, cleanup, sleep, tempHome } from "../helpers/daemon";

/** A fenced block: its language, its text, and the nearest heading above it. */
interface Fence {
  lang: string;
  body: string;
  heading: string;
}

/** Every fenced block of a Markdown file, in order. */
function fences(file: string): Fence[] {
  const found: Fence[] = [];
  let heading = "";
  let open: Fence | undefined;
  for (const line of fs.readFileSync(path.join(ROOT, file), "utf8").split("\n")) {
    if (open) {
      if (line.startsWith("```")) {
        found.push(open);
        open = undefined;
      } else {
        open.body += `${line}\n`;
      }
    } else if (line.startsWith("```")) {
      open = { lang: line.slice(3).trim(), body: "", heading };
    } else if (line.startsWith("#")) {
      heading = line.replace(/^#+\s*/, "");
    }
  }
  return found;
}

/** The shell blocks under one heading. */
function shellUnder(file: string, heading: string): string[] {
  const blocks = fences(file).filter((f) => f.lang === "sh" && f.heading === heading).map((f) => f.body);
  if (blocks.length === 0) throw new Error(`${file} has no sh block under "${heading}"`);
  return blocks;
}

// `astrid` on PATH, as after `npm link`.
const bin = tempHome();
fs.writeFileSync(path.join(bin, "astrid"), `#!/bin/sh\nexec "${process.execPath}" "${CLI_BIN}" "$@"\n`, { mode: 0o755 });
const homes: string[] = [];

/** Runs a block with bash (-e: the first failing command fails it) in `workspace`; stdout of the block. */
function run(block: string, home: string, workspace: string, timeoutMs = 60_000): { status: number | null; stdout: string; stderr: string } {
  const env: NodeJS.ProcessEnv = { ...process.env, ASTRID_HOME: home, PATH: `${bin}:${process.env.PATH ?? ""}` };
  delete env.ASTRID_BUNDLED_CAPSULES_DIR; // the bundle a user gets
  const r = spawnSync("bash", ["-eo", "pipefail", "-c", block], { cwd: workspace, env, encoding: "utf8", timeout: timeoutMs });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs `block` until `ok` holds for its result (hot reload takes a moment), at most `timeoutMs`. */
async function runUntil(block: string, home: string, workspace: string, ok: (out: string) => boolean, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // A command sent while the capsule restarts gets no reply: give up on that try after 15 s and try again.
    const r = run(block, home, workspace, 15_000);
    if ((r.status === 0 && ok(r.stdout)) || Date.now() > deadline) return r;
    await sleep(300);
  }
}

afterAll(async () => {
  for (const home of homes) run("astrid stop", home, bin);
  await cleanup();
});

describe("the README's tour, run as written", () => {
  it("chat, start, status, a first capsule, hot reload", async () => {
    const home = tempHome();
    const workspace = tempHome();
    homes.push(home);
    const [chat, start, capsule, reload] = shellUnder("README.md", "A 5-minute tour");
    expect(chat).toMatch(/^astrid chat -p .*\nastrid chat\n$/);
    // The bare `astrid chat` is the interactive one: a terminal is needed (chat-terminal.test.ts covers it).
    const headless = chat!.split("\n").filter((l) => l.startsWith("astrid chat -p")).join("\n");
    expect(run(headless, home, workspace)).toMatchObject({ status: 0, stdout: "6 * (3 + 4) = 42\n" });

    const started = run(start!, home, workspace);
    expect(started.status).toBe(0);
    expect(started.stdout).toMatch(/it is now persistent|started/);
    expect(started.stdout).toMatch(/Mode: +persistent/);
    expect(started.stdout).toContain(`Workspace: ${fs.realpathSync(workspace)}`);

    const made = run(capsule!, home, workspace);
    expect(made).toMatchObject({ status: 0 });
    expect(made.stdout).toContain("Hello, Ada! (from greeter)");

    // The edit first, then the rest once the reload had a moment (the edit is idempotent, so the block is rerun whole).
    expect(run(reload!.split("\n")[0]!, home, workspace).status).toBe(0);
    await sleep(1500);
    const reloaded = await runUntil(reload!, home, workspace, (out) => out.includes("Hi, Ada! (from greeter)"));
    expect(reloaded.status).toBe(0);
    expect(reloaded.stdout).toContain("Hi, Ada! (from greeter)");
    expect(reloaded.stdout).toMatch(/greeter +0\.1\.0 +ready/);
  }, 120_000);
});

describe("docs/capsules.md, run as written", () => {
  const home = tempHome();
  const workspace = tempHome();
  homes.push(home);

  it("the quickest start: a capsule, its command and its tool", () => {
    const [quick] = shellUnder("docs/capsules.md", "The quickest start");
    const r = run(quick!, home, workspace);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("Hello, Ada! (from greeter)");
    expect(r.stdout.match(/Hello, Ada! \(from greeter\)/g)).toHaveLength(2); // the command, then the tool
  }, 60_000);

  it("the complete capsule: its Capsule.toml and module load, and it answers as the guide says", async () => {
    const section = fences("docs/capsules.md").filter((f) => f.heading === "A complete capsule in JavaScript");
    const manifest = section.find((f) => f.lang === "toml")!.body;
    const module = section.find((f) => f.lang === "js")!.body;
    const name = /^name = "([^"]+)"/m.exec(manifest)![1]!;
    const dir = path.join(workspace, ".astrid", "capsules", name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "Capsule.toml"), manifest);
    fs.writeFileSync(path.join(dir, "index.js"), module);
    const [tryIt] = section.filter((f) => f.lang === "sh").map((f) => f.body);
    const r = await runUntil(tryIt!, home, workspace, (out) => out === "Your note: buy milk\nYour note: buy milk\n", 40_000);
    expect(r).toMatchObject({ status: 0, stdout: "Your note: buy milk\nYour note: buy milk\n" });
  }, 90_000);

  it("the debugging commands show that capsule", () => {
    const [debugging] = shellUnder("docs/capsules.md", "Debugging");
    const r = run(debugging!, home, workspace);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/notes-lite +0\.1\.0 +ready/);
    expect(r.stdout).toMatch(/notes-lite 0\.1\.0\n +State: +ready/);
  }, 60_000);
});
