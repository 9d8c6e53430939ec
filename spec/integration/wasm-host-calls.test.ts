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
    expect(await ask(`stream http://public.test:${port}/slow`, "stream")).toBe("stream: status=200 bytes=19 first=first several=true header=yes after-close=closed");
    expect(await ask(`stream http://public.test:${port}/big`, "stream", 60_000)).toBe(`stream: status=200 bytes=${BIG_BYTES} first=bbbbb several=true header=yes after-close=closed`);
    expect(await ask("stream http://127.0.0.1:9/", "stream")).toBe("stream: airlock-rejected");
    expect(await ask("stream https://example.com/", "stream")).toBe("stream: capability-denied");
  }, 90_000);

  it("process: spawn runs to completion, spawn-background is read, waited on and killed; an undeclared command is refused", async () => {
    const line = await ask("proc", "proc", 60_000);
    expect(line).toMatch(/^proc: out=hello from wasm code=0 ls=capability-denied env=unknown running=true pid=true wait=wait-timeout killed=true signal=(9|15)$/);
  }, 90_000);

  it("file handles, append, copy and rename go through the VFS; a path outside fs_write is refused at open", async () => {
    expect(await ask("files", "files")).toBe(
      "files: size=11 part=WASM readonly=access moved=hello WASM!+tail+more copy-left=false outside=capability-denied missing=not-found");
    expect(fs.readFileSync(path.join(d.home, "home", "default", "h.txt"), "utf8")).toBe("hello WASM!+tail+more");
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
      "ident: linked=ok resolved=alice links=cli/alice/system,discord/42/claimed,web/visitor-7/admin taken=already-linked nobody=user-not-found unlinked=ok gone=link-not-found create=unknown");
    expect(await ask("whois web visitor-7", "whois:")).toBe("whois: capability-denied");
    const audit = astrid(["audit", "tail", "-n", "2000", "--json"]).stdout.trim().split("\n").map((l) => JSON.parse(l) as { action: Record<string, unknown> });
    expect(audit.filter((e) => String(e.action.change).startsWith("identity_")).map((e) => [e.action.change, e.action.capsule, e.action.platform_user_id, e.action.linked_principal]))
      .toEqual([["identity_link", "wasm-main", "42", "alice"], ["identity_unlink", "wasm-main", "42", "alice"]]);
  });
});
