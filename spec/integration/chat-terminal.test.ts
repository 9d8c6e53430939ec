/**
 * `astrid chat` at a terminal and in a pipe. The terminal tests run the real CLI under a pseudo-terminal
 * (util-linux `script`), so readline is in raw mode and Ctrl-C arrives as the byte 0x03, as it does for a person.
 * The agent here is a test capsule that replies without echoing `turn_id` (as a third-party agent may), on demand
 * at once ("echo X") or late ("slow MS X"), so late replies to cancelled or timed-out turns can be provoked.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { CLI_BIN, ROOT, cleanup, sleep, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const AGENT = `
module.exports = {
  async setup(api) {
    await api.ipc.subscribe("user.v1.prompt", async (event) => {
      const { text, session_id } = event.payload ?? {};
      if (typeof text !== "string" || text === "") return;
      const reply = (t) => api.ipc.publish("agent.v1.response", { type: "agent_response", text: t, is_final: true, session_id });
      const slow = /^slow (\\d+) (.*)$/.exec(text);
      if (slow) setTimeout(() => void reply(slow[2]), Number(slow[1]));
      else await reply(text.startsWith("echo ") ? text.slice(5) : "you said: " + text);
    });
    await api.ipc.subscribe("cli.v1.command.execute", async (event) => {
      const { text, session_id } = event.payload ?? {};
      await api.ipc.publish("agent.v1.response", { type: "agent_response", text: "command: " + text, is_final: true, session_id });
    });
  },
};
`;

const MANIFEST = `
[package]
name = "test-slow-agent"
version = "0.1.0"
description = "replies now or later, without turn_id"
agent = true

[[component]]
file = "index.js"

[capabilities]
ipc_subscribe = ["user.v1.prompt", "cli.v1.command.execute"]
ipc_publish = ["agent.v1.response"]
`;

let daemon: RunningDaemon;
const workspace = tempHome();

beforeAll(async () => {
  const bundle = tempHome();
  fs.cpSync(path.join(ROOT, "capsules", "astrid-capsule-cli"), path.join(bundle, "astrid-capsule-cli"), { recursive: true });
  fs.mkdirSync(path.join(bundle, "test-slow-agent"));
  fs.writeFileSync(path.join(bundle, "test-slow-agent", "Capsule.toml"), MANIFEST);
  fs.writeFileSync(path.join(bundle, "test-slow-agent", "index.js"), AGENT);
  daemon = await spawnDaemon({ env: { ASTRID_BUNDLED_CAPSULES_DIR: bundle }, args: ["--workspace", workspace] });
  // The agent is loaded once a headless prompt is answered.
  await until(() => runPipe(["chat", "--timeout", "2", "-p", "echo up"]).then((r) => r.stdout), (out) => out === "up\n", 20_000);
}, 30_000);

afterAll(async () => {
  daemon.child.kill("SIGTERM");
  await daemon.exited;
  await cleanup();
});

/** Runs the CLI with pipes for stdin/stdout/stderr; `lines` are written one by one, `gapMs` apart. */
function runPipe(args: string[], lines: string[] = [], gapMs = 0): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: daemon.home }, cwd: workspace });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("close", (status) => resolve({ status, stdout, stderr }));
    void (async () => {
      // Paced input starts once the REPL runs (its banner is out), so the gaps are the ones the REPL sees.
      if (gapMs) await until(() => stderr, (e) => e.includes("Astrid chat"), 10_000);
      for (const line of lines) {
        child.stdin.write(`${line}\n`);
        if (gapMs) await sleep(gapMs);
      }
      child.stdin.end();
    })();
  });
}

/** `astrid chat` under a pseudo-terminal; what it draws accumulates in `screen()`. */
class Terminal {
  private out = "";
  readonly child: ChildProcessWithoutNullStreams;
  readonly exited: Promise<number | null>;

  constructor(args: string[]) {
    const command = [process.execPath, CLI_BIN, ...args].map((a) => `'${a}'`).join(" ");
    this.child = spawn("script", ["-qfec", command, "/dev/null"], { env: { ...process.env, ASTRID_HOME: daemon.home, TERM: "dumb" }, cwd: workspace });
    this.child.stdout.on("data", (d: Buffer) => (this.out += d.toString()));
    this.exited = new Promise((resolve) => this.child.on("close", resolve));
  }

  screen(): string {
    return this.out;
  }

  type(keys: string): void {
    this.child.stdin.write(keys);
  }

  /** Waits until the screen, after `from` characters, matches. */
  async waitFor(pattern: RegExp, from = 0): Promise<void> {
    await until(() => this.out.slice(from), (s) => pattern.test(s), 10_000).catch(() => {
      throw new Error(`terminal never showed ${pattern}; it shows:\n${JSON.stringify(this.out)}`);
    });
  }
}

describe("astrid chat at a terminal", () => {
  it("Ctrl-C discards a half-typed line; on an empty line it warns, and a second Ctrl-C leaves on a fresh line", async () => {
    const term = new Terminal(["chat"]);
    await term.waitFor(/you › $/);
    term.type("half typed");
    await term.waitFor(/half typed$/);
    term.type("\x03");
    let mark = term.screen().length;
    await term.waitFor(/you › $/, mark);
    // The discarded text is not sent with the next line: the agent quotes exactly what it got.
    term.type("echo clean\r");
    await term.waitFor(/\r?\nclean\r?\n/, mark);
    expect(term.screen()).not.toMatch(/half typedecho/);
    await term.waitFor(/you › $/, mark);

    mark = term.screen().length;
    term.type("\x03");
    await term.waitFor(/To leave, press Ctrl-C again[\s\S]*you › $/, mark);
    // Typing anything disarms it: this Ctrl-C clears the line again rather than leaving.
    term.type("x\x03");
    mark = term.screen().length;
    await sleep(300);
    expect(term.child.exitCode).toBeNull();
    term.type("\x03");
    await term.waitFor(/To leave/, mark);
    term.type("\x03");
    expect(await term.exited).toBe(0);
    // The last thing drawn ends the line, so the shell's prompt starts on its own.
    expect(term.screen()).toMatch(/you › \r?\n$/);
  }, 30_000);

  it("Ctrl-D on an empty line leaves on a fresh line too", async () => {
    const term = new Terminal(["chat"]);
    await term.waitFor(/you › $/);
    term.type("\x04");
    expect(await term.exited).toBe(0);
    expect(term.screen()).toMatch(/you › \r?\n$/);
  }, 20_000);

  it("Ctrl-C during a reply cancels the turn, and the reply that arrives afterwards is not shown", async () => {
    const term = new Terminal(["chat"]);
    await term.waitFor(/you › $/);
    term.type("slow 1200 stale answer\r");
    await sleep(300);
    term.type("\x03");
    await term.waitFor(/\(cancelled\)[\s\S]*you › $/);
    await sleep(1500); // the cancelled turn's reply has arrived by now
    term.type("echo fresh\r");
    await term.waitFor(/\r?\nfresh\r?\n/);
    term.type("/quit\r");
    expect(await term.exited).toBe(0);
    // Typed, the prompt is echoed once; the reply would show the text again after "(cancelled)".
    const screen = term.screen();
    expect(screen.slice(screen.indexOf("(cancelled)"))).not.toContain("stale answer");
  }, 30_000);
});

describe("astrid chat --repl in a pipe", () => {
  it("writes only replies on stdout; the banner goes to stderr", async () => {
    const r = await runPipe(["chat", "--repl"], ["echo one", "echo two", "/quit"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("one\ntwo\n");
    expect(r.stderr).toMatch(/^Astrid chat — session [0-9a-f-]{36}\./);
  }, 20_000);

  it("sends a slash command given with -p to the capsules' commands, as the terminal does", async () => {
    expect(await runPipe(["chat", "-p", "/greet Ada"])).toMatchObject({ status: 0, stdout: "command: /greet Ada\n" });
    expect(await runPipe(["chat", "-p", "greet Ada"])).toMatchObject({ status: 0, stdout: "you said: greet Ada\n" });
  }, 20_000);

  it("marks a reply to a timed-out turn as late instead of passing it off as the current one", async () => {
    const r = await runPipe(["chat", "--repl", "--timeout", "0.5"], ["slow 1000 tardy", "echo next"], 1800);
    expect(r.stdout).toBe("(late reply to an earlier turn) tardy\nnext\n");
    expect(r.stderr).toMatch(/no reply within 0.5 s/);
    expect(r.status).toBe(53);
  }, 20_000);
});
