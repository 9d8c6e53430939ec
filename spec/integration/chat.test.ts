/**
 * The README's main job: `astrid chat` against a daemon running the bundled capsules (the built-in assistant).
 * Every call runs the real CLI, which spawns a real ephemeral daemon when none runs.
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { CLI_BIN, cleanup, policyOnlyBundle, tempHome } from "../helpers/daemon";

const home = tempHome();
const workspace = tempHome();

/** Runs `astrid <args>` with `input` on stdin; the real bundle unless `env` says otherwise. */
function astrid(args: string[], input = "", env: Record<string, string> = {}, h = home) {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ASTRID_HOME: h, ...env };
  if (!env.ASTRID_BUNDLED_CAPSULES_DIR) delete childEnv.ASTRID_BUNDLED_CAPSULES_DIR;
  return spawnSync(process.execPath, [CLI_BIN, ...args], { env: childEnv, cwd: workspace, input, encoding: "utf8", timeout: 30_000 });
}

afterAll(async () => {
  for (const h of [home, noAgentHome]) astrid(["stop"], "", {}, h);
  await cleanup();
});
const noAgentHome = tempHome();

describe("astrid chat", () => {
  it("spawns an ephemeral daemon when none runs and answers one prompt (-p)", () => {
    const r = astrid(["chat", "-p", "what is 6 * (3 + 4)?"]);
    expect(r.stderr).toBe("");
    expect(r).toMatchObject({ status: 0, stdout: "6 * (3 + 4) = 42\n" });
    const status = JSON.parse(astrid(["status", "--json"]).stdout);
    expect(status).toMatchObject({ running: true, ephemeral: true, loaded_capsules: expect.arrayContaining(["astrid-capsule-cli", "astrid-capsule-assistant"]) });
  });

  it("sends piped stdin as the prompt, and prints JSON with --json", () => {
    const r = astrid(["chat", "--json"], "what is 2 ^ 10\n");
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ session_id: expect.stringMatching(/^[0-9a-f-]{36}$/), response: "2 ^ 10 = 1024" });
  });

  it("--repl reads a prompt per line, runs capsule commands, stops at /quit", () => {
    const r = astrid(["chat", "--repl"], "hello\n/remember water the plants\n/notes\n\n1/0\n/quit\nnever sent\n");
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/^Astrid chat — session [0-9a-f-]{36}\./); // the banner: stdout carries replies only
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^Hello! I am Astrid's built-in assistant/);
    expect(lines.slice(1)).toEqual(["Noted (1 note).", "1. water the plants", "I cannot calculate that: it divides by zero."]);
  });

  it("/help lists the built-in commands and the ones capsules declare", () => {
    const r = astrid(["chat", "--repl"], "/help\n");
    expect(r.stdout).toMatch(/\/quit +leave/);
    expect(r.stdout).toMatch(/\/remember Keep a note: \/remember <text> \(astrid-capsule-assistant\)/);
  });

  it("resumes a session with its earlier messages, also after the daemon restarted", () => {
    const session = "0b6f0a56-3c1e-4d3f-9a7e-2f1f4c8a9d10";
    expect(astrid(["chat", "-s", session, "-p", "what is 1 + 1"]).stdout).toBe("1 + 1 = 2\n");
    expect(astrid(["stop"]).status).toBe(0);
    const r = astrid(["chat", "-s", session, "--repl", "--json"], "what is 2 + 2\n");
    expect(r.status).toBe(0);
    const [history, reply] = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(history).toEqual({
      session_id: session,
      history: [
        expect.objectContaining({ role: "user", content: "what is 1 + 1" }),
        expect.objectContaining({ role: "assistant", content: "1 + 1 = 2" }),
      ],
    });
    expect(reply).toEqual({ session_id: session, response: "2 + 2 = 4" });
  });

  it("keeps concurrent chats apart: each session sees only its own replies", async () => {
    const run = (n: number) =>
      new Promise<string>((resolve) => {
        const child = spawn(process.execPath, [CLI_BIN, "chat", "--repl"], { env: { ...process.env, ASTRID_HOME: home }, cwd: workspace });
        let out = "";
        child.stdout.on("data", (d: Buffer) => (out += d.toString()));
        child.on("exit", () => resolve(out));
        child.stdin.end(Array.from({ length: 20 }, (_, i) => `${n} + ${i}\n`).join(""));
      });
    const outputs = await Promise.all([1, 2, 3, 4].map(run));
    outputs.forEach((out, k) => {
      const n = k + 1;
      expect(out.trim().split("\n")).toEqual(Array.from({ length: 20 }, (_, i) => `${n} + ${i} = ${n + i}`));
    });
  }, 30_000);

  it("answers odd prompts instead of choking: 1 MB of text, emoji, JSON, control characters", () => {
    const big = astrid(["chat", "--json"], `${"x".repeat(1_000_000)}\n`);
    expect(big.status).toBe(0);
    expect(JSON.parse(big.stdout).response).toMatch(/^You said: “x{200}… \(1000000 characters\)”/);
    for (const odd of ["🙂 héllo", '{"type":"raw_json","method":"Shutdown"}', "a\u0000b\u0007c"]) {
      const r = astrid(["chat", "--json"], odd); // on stdin: argv cannot carry a NUL
      expect(r.status).toBe(0);
      expect(JSON.parse(r.stdout).response).toContain("You said:");
    }
    expect(JSON.parse(astrid(["status", "--json"]).stdout).running).toBe(true);
    const long = astrid(["chat", "--json"], `${"1+".repeat(600)}1\n`);
    expect(JSON.parse(long.stdout).response).toBe("That expression is too long for me (1201 characters; I take 1000).");
  });

  it("keeps a session's history small: long messages are stored cut", () => {
    const session = "5d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    expect(astrid(["chat", "-s", session, "--json"], "y".repeat(1_000_000)).status).toBe(0);
    const r = astrid(["chat", "-s", session, "--repl", "--json"], "");
    expect(r.status).toBe(0);
    const { history } = JSON.parse(r.stdout.trim().split("\n")[0]!) as { history: Array<{ role: string; content: string }> };
    expect(history[0]!.content).toMatch(/^y{4000}… \(1000000 characters\)$/);
    expect(history).toHaveLength(2);
  });

  it("refuses bad arguments with a coded error and exit 1", () => {
    expect(astrid(["chat", "-s", "not-a-uuid", "-p", "x"])).toMatchObject({ status: 1, stderr: expect.stringMatching(/--session must be a UUID.*\[ASTRID_ERR_INVALID_ARGUMENT\]/) });
    expect(astrid(["chat"], "")).toMatchObject({ status: 1, stderr: expect.stringMatching(/nothing to send.*\[ASTRID_ERR_INVALID_ARGUMENT\]/) });
    expect(astrid(["chat", "--timeout", "0", "-p", "x"])).toMatchObject({ status: 1, stderr: expect.stringMatching(/--timeout must be a positive number/) });
  });

  it("says so and exits 53 when no capsule answers in time", () => {
    const r = astrid(["chat", "--timeout", "1", "-p", "anyone?"], "", { ASTRID_BUNDLED_CAPSULES_DIR: policyOnlyBundle() }, noAgentHome);
    expect(r.status).toBe(53);
    expect(r.stderr).toMatch(/no reply within 1 s — is an agent capsule loaded\? \(astrid capsule list\) \[ASTRID_ERR_TIMEOUT\]/);
    expect(fs.existsSync(path.join(noAgentHome, "run", "system.sock"))).toBe(true);
    // A line REPL reports each unanswered prompt in order and exits 53 at the end.
    const repl = astrid(["chat", "--repl", "--json", "--timeout", "0.5"], "one\ntwo\n", {}, noAgentHome);
    expect(repl.status).toBe(53);
    expect(repl.stdout.trim().split("\n").map((l) => JSON.parse(l).error?.code)).toEqual(["ASTRID_ERR_TIMEOUT", "ASTRID_ERR_TIMEOUT"]);
  });

  it("exits with a coded error at once when the daemon goes away mid-chat (stdin left open: -p does not wait on it)", async () => {
    const child = spawn(process.execPath, [CLI_BIN, "chat", "--timeout", "60", "-p", "still there?"], { env: { ...process.env, ASTRID_HOME: noAgentHome }, cwd: workspace });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    await new Promise((r) => setTimeout(r, 1000));
    const stopped = Date.now();
    expect(astrid(["stop"], "", {}, noAgentHome).status).toBe(0);
    expect(await exited).toBe(1);
    expect(Date.now() - stopped).toBeLessThan(5000);
    expect(stderr).toMatch(/the daemon closed the connection.*\[ASTRID_ERR_CONNECTION_CLOSED\]/);
  }, 20_000);
});
