/**
 * A WebAssembly capsule's host calls beyond the basics, against the real daemon: approval answered by a connected
 * person, elicitation during install, capability introspection, HTTP streams behind the network guard, host
 * processes, file handles through the VFS, and publish-as for an uplink capsule. The guest (host-calls-guest.js) is
 * built with ComponentizeJS into a temp directory; three capsules run it under different manifests ([env] ROLE).
 */
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { CLI_BIN, cleanup, connect, ROOT, sleep, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const SOURCES = path.join(ROOT, "spec", "fixtures", "wasm");
const APPROVAL_TIMEOUT_MS = 1500;
const SECRET = `tok-${Math.random().toString(36).slice(2)}`;
/** A body past http-request's 10 MiB cap, sent in 1 MiB writes. */
const BIG_BYTES = 11 * 1024 * 1024;

let d: RunningDaemon;
let c: DaemonClient;
let built: string;
let server: http.Server;
const received: IpcMessage[] = [];
/** How the person at the socket answers approval questions (undefined: not at all). */
let approve: ((request: Record<string, unknown>) => string | undefined) | undefined;
const approvals: Array<Record<string, unknown>> = [];
/** Answers to elicit questions, by key. */
const elicitAnswers: Record<string, Record<string, unknown>> = {};
const elicited: string[] = [];

function astrid(args: string[]) {
  return spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8", timeout: 30_000 });
}

/** A capsule directory running the guest under `capabilities` (TOML lines) with [env] ROLE = `role`. */
function wasmCapsule(root: string, name: string, role: string, capabilities: string): void {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "Capsule.toml"),
    `[package]\nname = "${name}"\nversion = "1.0.0"\n\n[[component]]\nfile = "guest.wasm"\n\n[capabilities]\n${capabilities}\n\n[env.ROLE]\ntype = "text"\ndefault = "${role}"\n`);
  fs.copyFileSync(path.join(built, "host-calls.wasm"), path.join(dir, "guest.wasm"));
  fs.writeFileSync(path.join(dir, "meta.json"), JSON.stringify({ wasm_hash: fs.readFileSync(path.join(built, "host-calls.hash"), "utf8") }));
}

/** A JavaScript capsule that answers the prompt `probe` by publishing on wasm.v1.probe (with or without the flag). */
function prober(root: string, name: string, flag: boolean): void {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "Capsule.toml"),
    `[package]\nname = "${name}"\nversion = "1.0.0"\n\n[[component]]\nfile = "index.js"\n\n[capabilities]\nipc_subscribe = ["user.v1.prompt"]\nipc_publish = ["wasm.v1.probe"]\nallow_prompt_injection = ${flag}\n`);
  fs.writeFileSync(path.join(dir, "index.js"),
    `module.exports = { async setup(api) { await api.ipc.subscribe("user.v1.prompt", async (e) => { if (e.payload.text === "probe") await api.ipc.publish("wasm.v1.probe", { from: ${JSON.stringify(name)}, session_id: e.payload.session_id }); }); } };\n`);
}

const MAIN_CAPABILITIES = [
  'kv = ["*"]',
  'ipc_subscribe = ["user.v1.prompt", "wasm.v1.probe", "wasm.v1.claimed"]',
  'ipc_publish = ["agent.v1.response", "wasm.v1.claimed"]',
  'fs_read = ["home://"]',
  'fs_write = ["home://"]',
  'net = ["public.test", "127.0.0.1"]',
  'host_process = ["echo", "sleep"]',
  'identity = ["link"]',
].join("\n");

beforeAll(async () => {
  built = tempHome();
  execFileSync(process.execPath, ["--import", path.join(SOURCES, "register.mjs"), path.join(SOURCES, "build-host-calls.mjs"), built], { stdio: "pipe", timeout: 240_000 });
  server = http.createServer((req, res) => {
    res.setHeader("x-fixture", "yes");
    if (req.url === "/slow") {
      // The first piece, then the rest 1.5 s later: a stream hands out the first before the rest exists.
      res.write("first");
      setTimeout(() => res.end("-then-the-rest"), 1500);
    } else if (req.url === "/big") {
      let sent = 0;
      const pump = () => {
        while (sent < BIG_BYTES && !res.destroyed) {
          sent += 1024 * 1024;
          if (!res.write(Buffer.alloc(1024 * 1024, 0x62))) return void res.once("drain", pump);
        }
        res.end();
      };
      pump();
    } else res.end("other");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.3", resolve));
  const workspace = tempHome();
  const root = path.join(workspace, ".astrid", "capsules");
  wasmCapsule(root, "wasm-main", "main", MAIN_CAPABILITIES);
  wasmCapsule(root, "wasm-uplink", "uplink", 'uplink = true\nipc_subscribe = ["user.v1.prompt"]\nipc_publish = ["agent.v1.response", "wasm.v1.claimed"]');
  prober(root, "js-trusted", true);
  prober(root, "js-plain", false);
  d = await spawnDaemon({
    args: ["--workspace", workspace],
    env: {
      ASTRID_APPROVAL_TIMEOUT_MS: String(APPROVAL_TIMEOUT_MS),
      ASTRID_CAPSULE_READY_TIMEOUT_MS: "60000",
      ASTRID_TEST_FAULTS: "1",
      ASTRID_TEST_DNS: "public.test=127.0.0.3",
      ASTRID_TEST_PUBLIC_ADDRESSES: "127.0.0.3",
    },
  });
  c = await connect(d);
  c.on("message", (m: IpcMessage) => {
    received.push(m);
    const p = m.payload as Record<string, unknown>;
    if (m.topic === "astrid.v1.approval") {
      approvals.push(p);
      const decision = approve?.(p);
      if (decision) c.publish(`astrid.v1.approval.response.${String(p.request_id)}`, { type: "approval_response", request_id: p.request_id, decision } as never);
    }
    if (m.topic === "astrid.v1.elicit" && p.capsule_id === "wasm-asker") {
      const key = (p.field as { key: string }).key;
      elicited.push(key);
      c.publish(`astrid.v1.elicit.response.${String(p.request_id)}`, { type: "elicit_response", request_id: p.request_id, ...(elicitAnswers[key] ?? { value: "?" }) } as never);
    }
  });
  const metadata = async () => Object.fromEntries(((await c.request("GetCapsuleMetadata")).data as Array<{ name: string; state: string }>).map((m) => [m.name, m.state]));
  await until(metadata, (m) => ["wasm-main", "wasm-uplink", "js-trusted", "js-plain"].every((n) => m[n] === "ready"), 120_000);
}, 400_000);

afterAll(async () => {
  await c?.close();
  if (d) {
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  }
  await new Promise((resolve) => server?.close(resolve));
  await cleanup();
});

let sessions = 0;
/** Sends `text` as a prompt in a session of its own; resolves with the first reply starting with `prefix`. */
async function ask(text: string, prefix: string, timeoutMs = 20_000): Promise<string> {
  const session = `hc${++sessions}`;
  c.publish("user.v1.prompt", { type: "user_input", text, session_id: session });
  const reply = await until(async () => received.find((m) => m.topic === "agent.v1.response" && m.payload.session_id === session && String(m.payload.text).startsWith(prefix)),
    (m) => m !== undefined, timeoutMs);
  return String(reply!.payload.text);
}

const kv = async (scope: string, key: string) => ((await c.request("KvGet", { scope, key })).data as { value?: string } | null)?.value;

describe("WebAssembly host calls", () => {
  it("request-approval: a person's approve, deny and approve_session reach the guest as its decision", async () => {
    approve = () => "approve";
    expect(await ask("approve deploy|prod", "approval:")).toBe("approval: approved");
    expect(approvals.at(-1)).toMatchObject({ type: "approval_required", action: "deploy", resource: "prod", capsule: "wasm-main" });
    approve = () => "deny";
    expect(await ask("approve rm|everything", "approval:")).toBe("approval: denied");
    approve = () => "approve_session";
    expect(await ask("approve push|main", "approval:")).toBe("approval: approved-session");
    // Nobody answers: denied once the wait runs out.
    approve = undefined;
    const before = approvals.length;
    expect(await ask("approve wait|forever", "approval:", APPROVAL_TIMEOUT_MS + 15_000)).toBe("approval: denied");
    expect(approvals.length).toBe(before + 1);
  }, 60_000);

  it("elicit: asked during install (answers kept, the secret stored, a cancel seen as cancelled), refused outside install", async () => {
    expect(await ask("elicit-late", "elicit-late:")).toBe("elicit-late: not-in-lifecycle");
    Object.assign(elicitAnswers, { nickname: { value: "Ada" }, token: { value: SECRET }, colour: {} });
    const src = path.join(tempHome(), "wasm-asker");
    wasmCapsule(path.dirname(src), "wasm-asker", "quiet", 'kv = ["*"]\nipc_subscribe = ["wasm.v1.never"]');
    const installed = await c.request("InstallCapsule", { source: src, workspace: false }, { timeoutMs: 120_000 });
    expect(installed).toMatchObject({ status: "Success", data: { name: "wasm-asker", state: "ready" } });
    expect(elicited).toEqual(["nickname", "token", "colour"]);
    expect(await kv("default:capsule:wasm-asker", "nickname")).toBe("value=Ada");
    expect(await kv("default:capsule:wasm-asker", "token")).toBe("secret-stored has=true");
    expect(await kv("default:capsule:wasm-asker", "colour")).toBe("cancelled");
  }, 180_000);

  it("capabilities: enumerate lists the manifest's; check answers allow_prompt_injection of a message's source capsule", async () => {
    const caps = await ask("caps", "caps:");
    const [list, bogus] = caps.slice("caps: ".length).split(" ");
    expect(list!.split(",").sort()).toEqual(["fs_read", "fs_write", "host_process", "identity", "ipc_publish", "ipc_subscribe", "kv", "net"]);
    expect(bogus).toBe("bogus=false");
    const session = `hc${++sessions}`;
    c.publish("user.v1.prompt", { type: "user_input", text: "probe", session_id: session });
    const checks = await until(async () => received.filter((m) => m.topic === "agent.v1.response" && m.payload.session_id === session).map((m) => String(m.payload.text)),
      (t) => t.length >= 2, 20_000);
    expect(checks.sort()).toEqual(["check js-plain: false", "check js-trusted: true"]);
  });

  it("http-stream-start: the body read as it arrives, past 10 MiB; a blocked address and an undeclared host are refused", async () => {
    const { port } = server.address() as AddressInfo;
    expect(await ask(`stream http://public.test:${port}/slow`, "stream")).toBe("stream: status=200 ready=true bytes=19 first=first several=true header=yes after-close=closed");
    expect(await ask(`stream http://public.test:${port}/big`, "stream", 60_000)).toBe(`stream: status=200 ready=true bytes=${BIG_BYTES} first=bbbbb several=true header=yes after-close=closed`);
    expect(await ask("stream http://127.0.0.1:9/", "stream")).toBe("stream: airlock-rejected");
    expect(await ask("stream https://example.com/", "stream")).toBe("stream: capability-denied");
  }, 90_000);

  it("process: spawn runs to completion, spawn-background is read, waited on and killed; an undeclared command is refused", async () => {
    const line = await ask("proc", "proc", 60_000);
    expect(line).toMatch(/^proc: out=hello from wasm code=0 ls=capability-denied env=invalid-input running=true pid=true wait=wait-timeout killed=true signal=(9|15)$/);
  }, 90_000);

  it("file handles, append, copy and rename go through the VFS; a path outside fs_write is refused at open", async () => {
    expect(await ask("files", "files")).toBe(
      "files: size=11 part=WASM readonly=access moved=hello WASM!+tail+more copy-left=false outside=capability-denied missing=not-found");
    expect(fs.readFileSync(path.join(d.home, "home", "default", "h.txt"), "utf8")).toBe("hello WASM!+tail+more");
  });

  it("fs-hard-link, fs-remove-dir-all, fs-canonicalize and fs-read-link go through the VFS; links out of home:// are refused", async () => {
    const home = path.join(d.home, "home", "default");
    fs.mkdirSync(path.join(home, "notes"), { recursive: true });
    fs.symlinkSync("notes", path.join(home, "to-notes"));
    const outside = tempHome();
    fs.writeFileSync(path.join(outside, "keep"), "kept");
    fs.symlinkSync(outside, path.join(home, "to-outside"));
    // The link path is checked for writing too: cwd:// is outside this capsule's fs_write (cross-root links are
    // refused as cross-vfs once both paths are allowed; spec/unit/kernel/vfs-links.test.ts).
    expect(await ask("fsx", "fsx")).toBe(
      "fsx: linked=a again=already-exists cross=capability-denied removed=3 gone=true file=not-directory canonical=home://notes link=home://notes escape=boundary-escape not-link=unknown");
    expect(fs.existsSync(path.join(home, "tree"))).toBe(false);
    expect(fs.statSync(path.join(home, "linked.txt")).nlink).toBe(1);
    expect(fs.readdirSync(outside)).toEqual(["keep"]);
    // The escape is audited like every refused path, without the link's target.
    const audit = astrid(["audit", "tail", "-n", "2000", "--json"]).stdout.trim().split("\n").map((l) => JSON.parse(l) as { action: Record<string, unknown> });
    const refused = audit.filter((e) => e.action.change === "denied" && e.action.call === "fs.read_link");
    expect(refused.map((e) => [e.action.path, e.action.code])).toEqual([["home://to-outside", "ASTRID_ERR_VFS_PATH_ESCAPE"]]);
    expect(JSON.stringify(refused)).not.toContain(outside);
  });

  it("publish-as: an uplink publishes for a linked principal (seen as claimed, audited); unlinked principals and other capsules are refused", async () => {
    expect(await ask("as alice", "as alice:")).toMatch(/^as alice: unknown\(ASTRID_ERR_IDENTITY_UNLINKED/);
    expect(astrid(["agent", "create", "alice"]).status).toBe(0);
    expect(astrid(["identity", "link", "web", "visitor-7", "alice"]).status).toBe(0);
    expect(await ask("as alice", "as alice:")).toBe("as alice: ok");
    expect(await until(() => kv("alice:capsule:wasm-main", "claimed"), (v) => v !== undefined, 10_000)).toBe("claimed:alice");
    // The same prompt reaches the uplink too, which publishes a second time.
    expect(await ask("as alice", "as-main:")).toBe("as-main: capability-denied");
    await sleep(200);
    const audit = astrid(["audit", "tail", "-n", "2000", "--json"]).stdout.trim().split("\n").map((l) => JSON.parse(l) as { principal?: string; action: Record<string, unknown> });
    expect(audit.filter((e) => e.action.change === "publish_as").map((e) => [e.principal, e.action.capsule, e.action.claimed, e.action.topic]))
      .toEqual([["default", "wasm-uplink", "alice", "wasm.v1.claimed"], ["default", "wasm-uplink", "alice", "wasm.v1.claimed"]]);
    expect(audit.some((e) => e.action.change === "denied" && e.action.capsule === "wasm-main" && e.action.call === "ipc.publish_as")).toBe(true);
  }, 30_000);

  it("identity: link, resolve, list and unlink through the kernel's links (audited); taken users, missing principals and undeclared capsules are refused", async () => {
    expect(await ask("ident discord 42 alice", "ident:")).toBe(
      "ident: linked=ok resolved=alice links=cli/alice/system,discord/42/claimed,web/visitor-7/admin taken=already-linked nobody=user-not-found unlinked=ok gone=link-not-found create=capability-denied");
    expect(await ask("whois web visitor-7", "whois:")).toBe("whois: capability-denied");
    const audit = astrid(["audit", "tail", "-n", "2000", "--json"]).stdout.trim().split("\n").map((l) => JSON.parse(l) as { action: Record<string, unknown> });
    expect(audit.filter((e) => String(e.action.change).startsWith("identity_")).map((e) => [e.action.change, e.action.capsule, e.action.platform_user_id, e.action.linked_principal]))
      .toEqual([["identity_link", "wasm-main", "42", "alice"], ["identity_unlink", "wasm-main", "42", "alice"]]);
  });
});

/**
 * A second daemon, with the bundled assistant: a WebAssembly uplink bridging a platform user to the assistant,
 * identity-create-user behind its two gates, and tools served the reference's way (`[[interceptor]]` on
 * `tool.v1.execute.<name>`, action `tool_execute_<name>`).
 */
describe("WebAssembly uplinks, principal creation and tools (with the bundled assistant)", () => {
  let d2: RunningDaemon;
  let c2: DaemonClient;
  const replies: Array<{ session: string; principal?: string; text: string }> = [];
  const cli = (args: string[]) => spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: d2.home }, encoding: "utf8", timeout: 30_000 });

  /** A capsule running `wasm` (host-calls or tool-guest) under the manifest body `body`, with [env] ROLE and LABEL. */
  function capsule(root: string, name: string, wasm: string, body: string, role = "main"): void {
    const dir = path.join(root, name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "Capsule.toml"),
      `[package]\nname = "${name}"\nversion = "1.0.0"\n\n[[component]]\nfile = "guest.wasm"\n\n${body}\n\n[env.ROLE]\ntype = "text"\ndefault = "${role}"\n\n[env.LABEL]\ntype = "text"\ndefault = "${name.replace(/^wasm-/, "")}"\n`);
    fs.copyFileSync(path.join(built, `${wasm}.wasm`), path.join(dir, "guest.wasm"));
    fs.writeFileSync(path.join(dir, "meta.json"), JSON.stringify({ wasm_hash: fs.readFileSync(path.join(built, `${wasm}.hash`), "utf8") }));
  }

  const MAIN_IPC = 'ipc_subscribe = ["user.v1.prompt", "wasm.v1.probe", "wasm.v1.claimed"]\nipc_publish = ["agent.v1.response"]';

  beforeAll(async () => {
    const workspace = tempHome();
    const root = path.join(workspace, ".astrid", "capsules");
    capsule(root, "wasm-bridge", "host-calls", '[capabilities]\nuplink = true\nipc_subscribe = ["user.v1.prompt", "agent.v1.response"]\nipc_publish = ["agent.v1.response"]', "bridge");
    capsule(root, "wasm-admin", "host-calls", `[capabilities]\nidentity = ["admin"]\n${MAIN_IPC}`);
    capsule(root, "wasm-linker", "host-calls", `[capabilities]\nidentity = ["link"]\n${MAIN_IPC}`);
    capsule(root, "wasm-tools", "tool-guest", [
      "[capabilities]",
      'ipc_publish = ["tool.v1.execute.*.result"]',
      ...["add", "divide", "shout"].map((t) => `\n[[interceptor]]\nevent = "tool.v1.execute.${t}"\naction = "tool_execute_${t}"`),
    ].join("\n"));
    fs.cpSync(path.join(ROOT, "spec", "fixtures", "capsules", "tool-caller"), path.join(root, "tool-caller"), { recursive: true });
    d2 = await spawnDaemon({ args: ["--workspace", workspace], env: { ASTRID_BUNDLED_CAPSULES_DIR: undefined, ASTRID_CAPSULE_READY_TIMEOUT_MS: "60000" } });
    c2 = await connect(d2);
    c2.on("message", (m: IpcMessage) => {
      if (m.topic === "agent.v1.response") replies.push({ session: String(m.payload.session_id), principal: m.principal, text: String(m.payload.text) });
    });
    const names = ["wasm-bridge", "wasm-admin", "wasm-linker", "wasm-tools", "tool-caller", "astrid-capsule-assistant"];
    const states = async () => Object.fromEntries(((await c2.request("GetCapsuleMetadata")).data as Array<{ name: string; state: string }>).map((m) => [m.name, m.state]));
    await until(states, (m) => names.every((n) => m[n] === "ready"), 120_000);
    expect(cli(["agent", "create", "bob"]).status).toBe(0);
    expect(cli(["identity", "link", "test", "u1", "bob"]).status).toBe(0);
  }, 180_000);

  afterAll(async () => {
    await c2?.close();
    if (d2) {
      d2.child.kill("SIGTERM");
      expect(await d2.exited).toBe(0);
    }
  });

  let n = 0;
  /** The replies to `text` (a session of its own) starting with `prefix`, once `count` of them arrived, sorted. */
  async function say(text: string, prefix: string, count = 1): Promise<string[]> {
    const session = `b${++n}`;
    c2.publish("user.v1.prompt", { type: "user_input", text, session_id: session });
    const got = () => replies.filter((r) => r.session === session && r.text.startsWith(prefix)).map((r) => r.text);
    await until(async () => got().length, (k) => k >= count, 20_000);
    await sleep(100);
    return got().sort();
  }
  /** What the bridge heard for principals other than the operator: `principal session text`. */
  const heard = async () => JSON.parse((await say("bridge heard", "bridge: heard"))[0]!.slice("bridge: heard ".length)) as string[];
  const audit = () => cli(["audit", "tail", "-n", "2000", "--json"]).stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as { principal?: string; action: Record<string, unknown> });

  it("uplink-register + uplink-send: a linked user's message reaches the assistant as their principal; the answer comes back in that session", async () => {
    expect(await say("bridge send u1 hello", "bridge: send")).toEqual(["bridge: send invalid-input"]);
    expect(await say("bridge register", "bridge: register")).toEqual(["bridge: register uuid"]);
    expect(await say("bridge send u1 12 * (3 + 4)", "bridge: send")).toEqual(["bridge: send true"]);
    const first = await until(heard, (h) => h.some((a) => a.includes("84")), 20_000);
    const [principal, session] = first.find((a) => a.includes("84"))!.split(" ");
    expect(principal).toBe("bob");
    // The same user stays in the same session; the operator's connection is in none of bob's.
    expect(await say("bridge send u1 2 + 2", "bridge: send")).toEqual(["bridge: send true"]);
    const second = await until(heard, (h) => h.filter((a) => a.startsWith("bob ")).length > first.filter((a) => a.startsWith("bob ")).length, 20_000);
    expect(second.filter((a) => a.startsWith("bob ")).every((a) => a.split(" ")[1] === session)).toBe(true);
    expect(replies.some((r) => r.session === session)).toBe(false);
    expect(await say("bridge send stranger hi", "bridge: send")).toEqual(["bridge: send unlinked"]);
    const sends = audit().filter((e) => e.action.change === "uplink_send" && e.action.capsule === "wasm-bridge");
    expect(sends[0]?.action).toMatchObject({ claimed: "bob", platform: "test", platform_user_id: "u1" });
  }, 90_000);

  it("identity-create-user: creates a principal as `astrid agent create` does, with the manifest's `admin` and the principal's agent:create", async () => {
    expect(await say("mkuser carol", "mkuser(", 2)).toEqual(["mkuser(admin): carol", "mkuser(linker): capability-denied"]);
    expect(fs.existsSync(path.join(d2.home, "etc", "profiles", "carol.toml"))).toBe(true);
    const agents = JSON.parse(cli(["agent", "list", "--json"]).stdout) as Array<{ principal: string; groups: string[] }>;
    expect(agents.find((a) => a.principal === "carol")?.groups).toEqual(["agent"]);
    const links = JSON.parse(cli(["identity", "list", "--principal", "carol", "--json"]).stdout) as { links: Array<{ platform: string; platform_user_id: string }> };
    expect(links.links.map((l) => `${l.platform}/${l.platform_user_id}`)).toEqual(["cli/carol"]);
    expect(await say("mkuser carol", "mkuser(admin)")).toEqual(["mkuser(admin): unknown(ASTRID_ERR_PRINCIPAL_EXISTS"]);
    expect(await say("mkuser no@good", "mkuser(admin)")).toEqual(["mkuser(admin): invalid-input"]);
    expect(await say("mkuser default", "mkuser(admin)")).toEqual(["mkuser(admin): unknown(ASTRID_ERR_PRINCIPAL_RESERVED"]);
    expect(await say("mkuser", "mkuser(admin)")).toEqual(["mkuser(admin): uuid"]);
    // Acting for bob (a prompt of bob's, through the uplink): bob's `agent` group holds no agent:create.
    expect(await say("bridge send u1 mkuser dave", "bridge: send")).toEqual(["bridge: send true"]);
    await until(heard, (h) => h.some((a) => a.startsWith("bob ") && a.endsWith("mkuser(admin): capability-denied")), 20_000);
    expect(fs.existsSync(path.join(d2.home, "etc", "profiles", "dave.toml"))).toBe(false);
    const entries = audit();
    expect(entries.filter((e) => e.action.change === "identity_create_user").map((e) => [e.principal, e.action.capsule, e.action.created_principal, e.action.error === undefined]))
      .toEqual([["default", "wasm-admin", "carol", true], ["default", "wasm-admin", "carol", false], ["default", "wasm-admin", "default", false], ["default", "wasm-admin", expect.stringMatching(/^[0-9a-f-]{36}$/), true]]);
    const denied = entries.filter((e) => e.action.change === "denied" && e.action.call === "identity.create_user").map((e) => [e.principal ?? e.action.principal, e.action.capsule]);
    expect(denied).toEqual(expect.arrayContaining([["default", "wasm-linker"], ["bob", "wasm-admin"]]));
  }, 90_000);

  it("tools: a tool_execute_request on tool.v1.execute.<name> reaches the guest's tool_execute_<name>, and its tool_execute_result follows", async () => {
    expect(await say("add 2 3", "tool:")).toEqual(['tool: "5"']);
    expect(await say("divide 1 0", "tool:")).toEqual(['tool: error "division by zero"']);
    expect(await say("divide 9 3", "tool:")).toEqual(['tool: "3"']);
  }, 60_000);

  it("tools: a guest that traps instead of answering yields an is_error result from the kernel, and the next call is served", async () => {
    const [trapped] = await say("shout hi", "tool:");
    expect(trapped).toMatch(/^tool: error ".*astrid-hook-trigger failed/);
    expect(await say("add 1 1", "tool:")).toEqual(['tool: "2"']);
  }, 60_000);
});
