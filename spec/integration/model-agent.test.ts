/**
 * The model agent (capsules/astrid-capsule-openai) against the real daemon, with OPENAI_BASE_URL pointing at a local
 * OpenAI-compatible server started in this process (bench/fake-openai-server.ts; the hosted service cannot be
 * reached here). Streaming, tool calls run through the kernel (capsule tools, MCP tools of a real
 * `@modelcontextprotocol/server-everything`, a tool that needs the chat's approval), every endpoint failure as a
 * clear reply (never a hang), the key kept out of replies, log, audit and --print-config, cancel aborting the HTTP
 * stream, the built-in assistant when no endpoint is configured, onboarding through the capsule's `[env]` in a chat
 * at a terminal, and exactly one agent answering each prompt (`--agent`, `/agent`).
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { connect as sdkConnect, type TurnEvent } from "../../client";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import type { AuditEntry } from "../../protocol/storage-messages";
import { startFakeOpenAi, type FakeOpenAi } from "../../bench/fake-openai-server";
import { CLI_BIN, DAEMON_BIN, cleanup, connect, daemonLog, ROOT, sleep, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const KEY = `sk-test-SECRET-${process.pid}-Zq8`;
const FIXTURES = path.join(ROOT, "spec", "fixtures");
const EVERYTHING = require.resolve("@modelcontextprotocol/server-everything/dist/index.js");
/** The real bundle (assistant, CLI policy, model agent), not the test default of the CLI policy capsule alone. */
const REAL_BUNDLE = { ASTRID_BUNDLED_CAPSULES_DIR: undefined };

let fake: FakeOpenAi;
let d: RunningDaemon;
let c: DaemonClient;
const received: IpcMessage[] = [];
let sessions = 0;

interface Reply {
  deltas: string[];
  text: string;
  response: IpcMessage;
  /** Every agent.v1.response of the session, to see whether a second one came. */
  all: () => IpcMessage[];
}

/** Sends a prompt in a fresh (or given) session and waits for its final response. */
async function prompt(text: string, options: { session?: string; context?: Record<string, unknown>; timeoutMs?: number } = {}): Promise<Reply> {
  const session = options.session ?? `model-${++sessions}`;
  const from = received.length;
  c.publish("user.v1.prompt", { type: "user_input", text, session_id: session, context: { turn_id: `t-${sessions}-${Date.now()}`, ...options.context } });
  const mine = () => received.slice(from).filter((m) => m.payload.session_id === session);
  const response = await until(() => mine().find((m) => m.topic === "agent.v1.response"), (m) => m !== undefined, options.timeoutMs ?? 15_000);
  return {
    deltas: mine().filter((m) => m.topic === "agent.v1.stream.delta").map((m) => String(m.payload.text)),
    text: String(response!.payload.text),
    response: response!,
    all: () => mine().filter((m) => m.topic === "agent.v1.response"),
  };
}

let workspace: string;
/** `astrid <args>` against the test daemon (never while the fake endpoint must answer: this blocks the process). */
function cli(args: string[]) {
  return spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: d.home }, cwd: workspace, encoding: "utf8", timeout: 20_000 });
}

/** `astrid <args>` with `lines` on its stdin, without blocking this process (the fake endpoint must answer). */
function cliAsync(args: string[], lines: string[] = []): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, ASTRID_HOME: d.home };
  delete env.ASTRID_BUNDLED_CAPSULES_DIR;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI_BIN, ...args], { env, cwd: workspace });
    child.stdin.end(lines.map((l) => `${l}\n`).join(""));
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

function auditTail(): AuditEntry[] {
  return cli(["audit", "tail", "-n", "5000", "--json"]).stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as AuditEntry);
}

beforeAll(async () => {
  fake = await startFakeOpenAi({ delayMs: 10 });
  workspace = tempHome();
  const capsules = path.join(workspace, ".astrid", "capsules");
  fs.cpSync(path.join(FIXTURES, "capsules", "calculator"), path.join(capsules, "calculator"), { recursive: true });
  fs.cpSync(path.join(FIXTURES, "agents"), capsules, { recursive: true });
  const home = tempHome();
  fs.mkdirSync(path.join(home, "etc"), { recursive: true });
  fs.writeFileSync(path.join(home, "etc", "servers.toml"), `[servers.everything]\ncommand = ${JSON.stringify(process.execPath)}\nargs = [${JSON.stringify(EVERYTHING)}, "stdio"]\n`);
  d = await spawnDaemon({ home, args: ["--workspace", workspace, "--audit-permissions"], env: { ...REAL_BUNDLE, OPENAI_BASE_URL: fake.url, OPENAI_API_KEY: KEY, ASTRID_AGENT_MODEL: "fake-model" } });
  c = await connect(d);
  c.on("message", (m: IpcMessage) => received.push(m));
  const ready = ["astrid-capsule-openai", "astrid-capsule-assistant", "calculator", "second-agent", "model-prober", "guarded"];
  await until(() => c.request("GetCapsuleMetadata").then((r) => r.data as Array<{ name: string; state: string }>),
    (list) => ready.every((name) => list.some((x) => x.name === name && x.state === "ready")), 20_000);
  await until(() => c.request("McpList").then((r) => r.data as Array<{ name: string; state: string }>), (list) => list.some((s) => s.name === "everything" && s.state === "running"), 30_000);
}, 60_000);

afterAll(async () => {
  await c?.close();
  if (d) {
    d.child.kill("SIGTERM");
    await d.exited;
  }
  await fake?.close();
  await cleanup();
});

describe("the model agent over an OpenAI-compatible endpoint", () => {
  it("streams deltas, then the final response; the endpoint gets the operator's key and model, and the tools", async () => {
    // Streamed as it arrives: chunks 250 ms apart reach the client as separate deltas.
    const streamed = await prompt("stream it");
    expect(streamed.deltas).toEqual(["One ", "two ", "three."]);
    expect(streamed.text).toBe("One two three.");
    const r = await prompt("hello there");
    expect(r.deltas.join("")).toBe("Hello from the fake model.");
    expect(r.text).toBe("Hello from the fake model.");
    expect(r.response.payload).toMatchObject({ is_final: true, turn_id: expect.any(String) });
    const seen = fake.requests.at(-1)!;
    expect(seen.authorization).toBe(`Bearer ${KEY}`);
    expect(seen.body).toMatchObject({ model: "fake-model", stream: true });
    expect(seen.body.tools?.map((t) => t.function.name)).toEqual(expect.arrayContaining(["add", "divide"]));
    // The same session carries its history to the next request.
    await prompt("hello again", { session: r.response.payload.session_id as string });
    const contents = fake.requests.at(-1)!.body.messages.map((m) => `${m.role}:${String(m.content)}`);
    expect(contents).toEqual(expect.arrayContaining(["user:hello there", "assistant:Hello from the fake model.", "user:hello again"]));
  });

  it("the client SDK's turn yields the deltas in order, then the response", async () => {
    const sdk = await sdkConnect({ home: d.home });
    try {
      const events: TurnEvent[] = [];
      for await (const e of sdk.prompt("model-sdk-1", "hi from the sdk")) events.push(e);
      expect(events.at(-1)!.type).toBe("response");
      expect(events.filter((e) => e.type === "delta").length).toBeGreaterThanOrEqual(1);
      expect(events.slice(0, -1).every((e) => e.type === "delta")).toBe(true);
      expect((events.at(-1) as { text: string }).text).toBe("Hello from the fake model.");
    } finally {
      await sdk.close();
    }
  });

  it("`astrid chat -p` prints the model's answer", async () => {
    // Not spawnSync: the fake endpoint runs in this process and must keep answering while the CLI waits.
    const r = await cliAsync(["chat", "-p", "hello from the cli"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("Hello from the fake model.\n");
  });

  it("runs the model's tool call through the kernel (a real capsule tool) and answers with its result", async () => {
    const before = fake.requests.length;
    const r = await prompt("add 2 3");
    expect(r.text).toBe("The sum is 5.");
    const second = fake.requests.slice(before).at(-1)!.body.messages;
    expect(second.at(-2)).toMatchObject({ role: "assistant" });
    expect(second.at(-1)).toMatchObject({ role: "tool", tool_call_id: "call_1", content: "5" });
    // The call went through the kernel's gate as the model agent's publish (audited with --audit-permissions), as
    // did its use of the endpoint.
    const checks = auditTail().filter((e) => e.action.type === "capsule_lifecycle" && (e.action as { capsule?: string }).capsule === "astrid-capsule-openai")
      .map((e) => (e.action as { target?: string }).target);
    expect(checks).toEqual(expect.arrayContaining(["tool.v1.execute.add", fake.url]));
  });

  it("offers the MCP servers' tools as mcp__<server>__<tool> and runs the model's call through the kernel's MCP path", async () => {
    const before = fake.requests.length;
    const r = await prompt("mcpecho over the kernel");
    expect(r.text).toBe("Tool said: Echo: over the kernel");
    const first = fake.requests[before]!.body;
    expect(first.tools?.map((t) => t.function.name)).toEqual(expect.arrayContaining(["add", "mcp__everything__echo"]));
    expect(fake.requests.slice(before).at(-1)!.body.messages.at(-1)).toMatchObject({ role: "tool", content: "Echo: over the kernel" });
    // Gated (the manifest's mcp = ["*"] and the principal's self:mcp:use, audited with --audit-permissions) and
    // audited as an MCP tool call of the model agent, like any capsule's.
    const audit = auditTail();
    expect(audit.some((e) => e.action.type === "capsule_lifecycle" && (e.action as { capsule?: string; target?: string }).capsule === "astrid-capsule-openai"
      && (e.action as { target?: string }).target === "everything")).toBe(true);
    expect(audit.filter((e) => e.action.type === "mcp_call").map((e) => e.action)).toEqual(expect.arrayContaining([
      expect.objectContaining({ server: "everything", operation: "call_tool", target: "echo", capsule: "astrid-capsule-openai" }),
    ]));
  });

  it("a tool that needs approval asks the chat: denied, the model hears so and answers; approved, it gets the result", async () => {
    const denied = await cliAsync(["chat", "-p", "guarded /tmp/astrid-guarded-denied"]);
    expect(denied.stderr).toMatch(/denied guarded to write \/tmp\/astrid-guarded-denied \(headless mode; --yes approves\)/);
    expect(denied.stdout).toMatch(/^Tool said: error: .*the user did not allow writing \/tmp\/astrid-guarded-denied \(deny\)\n$/);
    expect(denied.status).toBe(0);
    const approved = await cliAsync(["chat", "--yes", "-p", "guarded /tmp/astrid-guarded-ok"]);
    expect(approved.stderr).toMatch(/approved guarded to write \/tmp\/astrid-guarded-ok \(--yes\)/);
    expect(approved.stdout).toBe("Tool said: wrote /tmp/astrid-guarded-ok\n");
  });

  it("a tool call with unparsable arguments, or to a tool that does not exist, gets a clear reply", async () => {
    expect((await prompt("badargs please")).text).toMatch(/^Tool said: error: the arguments for add are not valid JSON: "\{not json"$/);
    const unknown = await prompt("unknowntool please");
    expect(unknown.text).toMatch(/^Tool said: error: there is no tool named "nope"; available: .*\badd\b/);
  });

  it("a model that calls tools forever is stopped at the step cap", async () => {
    const before = fake.requests.length;
    const r = await prompt("loop forever");
    expect(r.text).toMatch(/I stopped after 8 steps: the model kept calling tools without answering\./);
    expect(fake.requests.length - before).toBe(8);
  });

  it("401 says the key was refused, and the key appears nowhere: replies, daemon log, audit, --print-config", async () => {
    const r = await prompt("e401");
    expect(r.text).toMatch(/refused the API key \(HTTP 401\).*check OPENAI_API_KEY.*\[ASTRID_ERR_MODEL_AUTH\]/s);
    expect(r.text).toContain("Bearer (hidden)"); // the fake server echoed the key; it was scrubbed
    expect(fake.requests.at(-1)!.authorization).toBe(`Bearer ${KEY}`); // ...after it was really sent
    await until(() => daemonLog(d.home), (log) => log.includes("ASTRID_ERR_MODEL_AUTH"), 5000);
    const everything = [
      JSON.stringify(received),
      daemonLog(d.home),
      d.stdout(),
      d.stderr(),
      JSON.stringify(auditTail()),
      spawnSync(process.execPath, [DAEMON_BIN, "--print-config"], { env: { ...process.env, ASTRID_HOME: tempHome(), OPENAI_API_KEY: KEY, OPENAI_BASE_URL: fake.url }, encoding: "utf8" }).stdout,
    ];
    for (const text of everything) expect(text).not.toContain(KEY);
    expect(everything[5]).toContain('"agentApiKey": "(set, hidden)"');
  });

  it("429 (with retry-after), 500, a dropped stream and a malformed chunk each become a clear reply", async () => {
    const started = Date.now();
    const [e429, e500, drop, malformed] = await Promise.all(["e429", "e500", "drop", "malformed"].map((w) => prompt(w)));
    expect(e429.text).toMatch(/rate limiting \(HTTP 429\): Rate limit reached; retry after 7 s \[ASTRID_ERR_MODEL_RATE_LIMITED\]/);
    expect(e500.text).toMatch(/answered HTTP 500: The server had an error \[ASTRID_ERR_MODEL_UNAVAILABLE\]/);
    expect(drop.deltas).toEqual(["partial answer"]);
    expect(drop.text).toMatch(/^partial answer\n\nThe model's answer broke off\. .*dropped mid-answer.*\[ASTRID_ERR_MODEL_STREAM\]/s);
    expect(malformed.text).toMatch(/^before \n\nThe model's answer broke off\. .*malformed: a chunk is not JSON.*\[ASTRID_ERR_MODEL_STREAM\]/s);
    expect(Date.now() - started).toBeLessThan(5000);
    // Each failure is a log line too.
    await until(() => daemonLog(d.home), (log) => ["ASTRID_ERR_MODEL_RATE_LIMITED", "ASTRID_ERR_MODEL_STREAM"].every((code) => log.includes(code)), 5000);
  });

  it("cancel aborts the HTTP stream: the endpoint sees the connection close", async () => {
    const session = "model-cancel-1";
    const before = fake.requests.length;
    const reply = prompt("slow", { session, timeoutMs: 10_000 });
    await until(() => fake.requests.length, (n) => n > before, 5000);
    const request = fake.requests[before]!;
    let closed = false;
    void request.closed.then(() => (closed = true));
    await sleep(200);
    expect(closed).toBe(false);
    c.publish("user.v1.prompt", { type: "user_input", text: "", session_id: session, context: { action: "cancel_turn" } });
    expect((await reply).text).toBe("(cancelled)");
    await until(() => closed, Boolean, 3000);
    // The session still answers.
    expect((await prompt("hello after cancel", { session })).text).toBe("Hello from the fake model.");
  });

  it("a prompt of 1 MiB is refused with a clear reply, without calling the endpoint", async () => {
    const before = fake.requests.length;
    const r = await prompt("x".repeat(1024 * 1024 - 1024));
    expect(r.text).toMatch(/the model agent takes at most 262144/);
    expect(fake.requests.length).toBe(before);
  });
});

describe("exactly one agent answers a prompt", () => {
  it("GetCapsuleMetadata marks the agents", async () => {
    const list = (await c.request("GetCapsuleMetadata")).data as Array<{ name: string; agent: boolean }>;
    const agents = Object.fromEntries(list.map((x) => [x.name, x.agent]));
    expect(agents).toMatchObject({ "astrid-capsule-openai": true, "astrid-capsule-assistant": true, "second-agent": true, calculator: false, "model-prober": false });
    // The one sessions that chose none get (an endpoint is configured: the model agent).
    expect(list.filter((x) => (x as { default_agent?: boolean }).default_agent).map((x) => x.name)).toEqual(["astrid-capsule-openai"]);
  });

  it("with an endpoint configured the model agent is the default, and no other agent answers too", async () => {
    const r = await prompt("hello, who answers?");
    expect(r.text).toBe("Hello from the fake model.");
    await sleep(500);
    expect(r.all()).toHaveLength(1);
  });

  it("a session's chosen agent answers it (and keeps answering); an unknown one is refused by name", async () => {
    const session = "model-choice-1";
    const first = await prompt("pick me", { session, context: { agent: "second-agent" } });
    expect(first.text).toBe("second-agent: pick me");
    const again = await prompt("and again", { session });
    expect(again.text).toBe("second-agent: and again");
    await sleep(500);
    expect(again.all()).toHaveLength(1);
    expect(received.filter((m) => m.topic === "agent.v1.response" && m.payload.session_id === session)).toHaveLength(2);
    const unknown = await prompt("hi", { context: { agent: "no-such-agent" } });
    expect(unknown.text).toMatch(/No agent named "no-such-agent" is loaded \[ASTRID_ERR_AGENT_UNKNOWN\]\. Loaded agents: .*second-agent/);
  });

  it("`astrid chat --agent NAME` picks the agent", () => {
    expect(cli(["chat", "--agent", "second-agent", "-p", "via the cli"]).stdout).toBe("second-agent: via the cli\n");
    expect(cli(["chat", "--agent", "astrid-capsule-assistant", "-p", "what is 6 * 7"]).stdout).toBe("6 * 7 = 42\n");
  });

  it("`/agent` in chat lists the agents (* marks this session's) and switches the session's agent", async () => {
    const r = await cliAsync(["chat", "--repl"], ["/agent", "/agent second-agent", "hi there", "/agent", "/agent no-such-agent", "/quit"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe([
      "  astrid-capsule-assistant",
      "* astrid-capsule-openai (default)",
      "  second-agent",
      "This session's agent is now second-agent.",
      "second-agent: hi there",
      "  astrid-capsule-assistant",
      "  astrid-capsule-openai (default)",
      "* second-agent",
      'No agent named "no-such-agent" is loaded. Agents: astrid-capsule-assistant, astrid-capsule-openai, second-agent.',
      "",
    ].join("\n"));
  });

  it("a capsule without `model = true` cannot use the endpoint, and its own HTTP to it stays behind the network guard", async () => {
    const session = "model-probe-1";
    c.publish("cli.v1.command.execute", { type: "user_input", text: `/probe ${fake.url}/chat/completions`, session_id: session });
    const reply = await until(() => received.find((m) => m.topic === "agent.v1.response" && m.payload.session_id === session), (m) => m !== undefined, 10_000);
    const [model, http] = /^model=(\S+) http=(\S+)$/.exec(String(reply!.payload.text))!.slice(1);
    expect(model).not.toBe("ok");
    expect(http).not.toBe("ok");
    expect(String(reply!.payload.text)).toMatch(/model=ASTRID_ERR_\w+ http=ASTRID_ERR_\w+/);
  });
});

/** `astrid chat` under a pseudo-terminal (util-linux `script`), so it asks questions as it does a person. */
class Terminal {
  private out = "";
  readonly child: ReturnType<typeof spawn>;
  readonly exited: Promise<number | null>;

  constructor(home: string, args: string[]) {
    const command = [process.execPath, CLI_BIN, ...args].map((a) => `'${a}'`).join(" ");
    const env: NodeJS.ProcessEnv = { ...process.env, ASTRID_HOME: home, TERM: "dumb" };
    delete env.ASTRID_BUNDLED_CAPSULES_DIR;
    this.child = spawn("script", ["-qfec", command, "/dev/null"], { env, cwd: workspace });
    this.child.stdout!.on("data", (b: Buffer) => (this.out += b.toString()));
    this.exited = new Promise((resolve) => this.child.on("close", resolve));
  }

  screen(): string {
    return this.out;
  }

  type(keys: string): void {
    this.child.stdin!.write(keys);
  }

  /** Waits until the screen after `from` characters matches; returns where the match ended. */
  async waitFor(pattern: RegExp, from = 0): Promise<number> {
    await until(() => this.out.slice(from), (s) => pattern.test(s), 15_000).catch(() => {
      throw new Error(`terminal never showed ${pattern}; it shows:\n${JSON.stringify(this.out)}`);
    });
    const m = pattern.exec(this.out.slice(from))!;
    return from + m.index + m[0].length;
  }
}

describe("without an endpoint", () => {
  it("onboarding: the model agent's first use asks for its [env] in chat, the key hidden; then it answers", async () => {
    const none = await spawnDaemon({ env: { ...REAL_BUNDLE, OPENAI_BASE_URL: undefined, OPENAI_API_KEY: undefined, ASTRID_AGENT_MODEL: undefined } });
    const term = new Terminal(none.home, ["chat", "--agent", "astrid-capsule-openai"]);
    try {
      let at = await term.waitFor(/you › $/);
      term.type("hello\r");
      // The turn's reply first, then the questions (asked once the turn is over).
      at = await term.waitFor(/No language model is configured\. Answer the questions[^\n]*\n[\s\S]*astrid-capsule-openai needs configuration[\s\S]*OPENAI_BASE_URL \(e\.g\. http:\/\/127\.0\.0\.1:11434\/v1\) › $/);
      term.type(`${fake.url}\r`);
      at = await term.waitFor(/OPENAI_API_KEY \(hidden\) › $/, at);
      term.type(`${KEY}\r`);
      at = await term.waitFor(/ASTRID_AGENT_MODEL \(e\.g\. llama3\.2\) › $/, at);
      term.type("onboarded-model\r");
      at = await term.waitFor(/astrid-capsule-openai reloaded with it\.[\s\S]*you › $/, at);
      const before = fake.requests.length;
      term.type("hello again\r");
      await term.waitFor(/Hello from the fake model\.\r?\n[\s\S]*you › $/, at);
      expect(fake.requests.slice(before)).toHaveLength(1);
      expect(fake.requests.at(-1)!).toMatchObject({ authorization: `Bearer ${KEY}`, body: { model: "onboarded-model" } });
      // Configured now, the model agent is the default agent of new sessions too.
      const env: NodeJS.ProcessEnv = { ...process.env, ASTRID_HOME: none.home };
      delete env.ASTRID_BUNDLED_CAPSULES_DIR;
      const headless = await new Promise<string>((resolve) => {
        const child = spawn(process.execPath, [CLI_BIN, "chat", "-p", "hi"], { env, cwd: workspace, stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        child.stdout.on("data", (b: Buffer) => (out += b.toString()));
        child.on("close", () => resolve(out));
      });
      expect(headless).toBe("Hello from the fake model.\n");
      term.type("/quit\r");
      expect(await term.exited).toBe(0);
      // The key was typed but never echoed; it is stored 0600 and written nowhere else the daemon keeps.
      const file = path.join(none.home, "home", "default", ".config", "env", "astrid-capsule-openai.env.json");
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      expect(JSON.parse(fs.readFileSync(file, "utf8"))).toEqual({ OPENAI_BASE_URL: fake.url, OPENAI_API_KEY: KEY, ASTRID_AGENT_MODEL: "onboarded-model" });
      const audit = spawnSync(process.execPath, [CLI_BIN, "audit", "tail", "-n", "5000", "--json"], { env: { ...process.env, ASTRID_HOME: none.home }, encoding: "utf8" }).stdout;
      for (const text of [term.screen(), daemonLog(none.home), none.stdout(), none.stderr(), audit]) expect(text).not.toContain(KEY);
    } finally {
      term.child.kill("SIGKILL");
      none.child.kill("SIGTERM");
      await none.exited;
    }
  }, 60_000);

  it("the built-in assistant answers and says how to configure one; the model agent, asked, says the same", async () => {
    const none = await spawnDaemon({ env: { ...REAL_BUNDLE, OPENAI_BASE_URL: undefined, OPENAI_API_KEY: undefined } });
    const client = await connect(none);
    const inbox: IpcMessage[] = [];
    client.on("message", (m: IpcMessage) => inbox.push(m));
    const ask = async (session: string, text: string, context: Record<string, unknown> = {}) => {
      client.publish("user.v1.prompt", { type: "user_input", text, session_id: session, context });
      const reply = await until(() => inbox.find((m) => m.topic === "agent.v1.response" && m.payload.session_id === session), (m) => m !== undefined, 10_000);
      return String(reply!.payload.text);
    };
    try {
      expect(await ask("none-1", "hello")).toMatch(/^Hello! I am Astrid's built-in assistant.*set OPENAI_BASE_URL/s);
      expect(await ask("none-2", "hello", { agent: "astrid-capsule-openai" })).toMatch(/^No language model is configured\. .*set OPENAI_BASE_URL/);
    } finally {
      await client.close();
      none.child.kill("SIGTERM");
      await none.exited;
    }
  });
});
