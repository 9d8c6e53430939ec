/**
 * A capsule written for the reference SDK calling what it offers beyond the basics, against the real daemon:
 * `capabilities.check/enumerate`, `http.streamStart` behind the network guard, `process.spawn`, `fs.open` file
 * handles and `ipc.publishJsonAs` (an uplink only, for a linked principal). Each refusal reaches the capsule as a
 * `SysError` with the WIT code the reference would use.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { capsulesByName, CLI_BIN, connect, ROOT, sleep, spawnDaemon, stopDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const FIXTURE = path.join(ROOT, "spec", "fixtures", "astrid-os-sdk", "host-calls");
const BODY = "y".repeat(100_000);

let d: RunningDaemon;
let c: DaemonClient;
let server: http.Server;
const replies: Array<{ session: string; text: string }> = [];

function astrid(args: string[]) {
  return spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8", timeout: 30_000 });
}

/** A JavaScript capsule that answers the prompt `sdk probe` by publishing on sdkhc.v1.probe. */
function prober(root: string, name: string, flag: boolean): void {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "Capsule.toml"),
    `[package]\nname = "${name}"\nversion = "1.0.0"\n\n[[component]]\nfile = "index.js"\n\n[capabilities]\nipc_subscribe = ["user.v1.prompt"]\nipc_publish = ["sdkhc.v1.probe"]\nallow_prompt_injection = ${flag}\n`);
  fs.writeFileSync(path.join(dir, "index.js"),
    `module.exports = { async setup(api) { await api.ipc.subscribe("user.v1.prompt", async (e) => { if (e.payload.text === "sdk probe") await api.ipc.publish("sdkhc.v1.probe", { from: ${JSON.stringify(name)}, session_id: e.payload.session_id }); }); } };\n`);
}

beforeAll(async () => {
  server = http.createServer((req, res) => {
    res.setHeader("x-fixture", "sdk");
    if (req.url === "/slow") {
      // A first piece, the rest 1 s later: the stream hands the first out on its own.
      res.write("first");
      setTimeout(() => res.end("-rest"), 1000);
    } else res.end(BODY);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.3", resolve));
  const workspace = tempHome();
  const root = path.join(workspace, ".astrid", "capsules");
  fs.cpSync(FIXTURE, path.join(root, "sdk-calls"), { recursive: true });
  fs.cpSync(FIXTURE, path.join(root, "sdk-uplink"), { recursive: true });
  const toml = path.join(root, "sdk-uplink", "Capsule.toml");
  fs.writeFileSync(toml, fs.readFileSync(toml, "utf8").replace('name = "sdk-calls"', 'name = "sdk-uplink"').replace('default = "calls"', 'default = "uplink"').replace("[capabilities]\n", "[capabilities]\nuplink = true\n").replace('identity = ["link"]\n', ""));
  prober(root, "sdk-trusted", true);
  prober(root, "sdk-plain", false);
  d = await spawnDaemon({
    args: ["--workspace", workspace],
    env: { ASTRID_TEST_FAULTS: "1", ASTRID_TEST_DNS: "public.test=127.0.0.3", ASTRID_TEST_PUBLIC_ADDRESSES: "127.0.0.3" },
  });
  c = await connect(d);
  c.on("message", (m: IpcMessage) => {
    if (m.topic === "agent.v1.response") replies.push({ session: String(m.payload.session_id), text: String(m.payload.text) });
  });
  const states = async () => Object.fromEntries(Object.values(await capsulesByName(c)).map((m) => [m.name, m.last_error ?? m.state]));
  await until(states, (m) => ["sdk-calls", "sdk-uplink", "sdk-trusted", "sdk-plain"].every((n) => m[n] === "ready"), 30_000);
}, 60_000);

afterAll(async () => {
  await stopDaemon(d, c);
  await new Promise((resolve) => server?.close(resolve));
});

let sessions = 0;
/** The replies to `text` (in a session of its own) that start with `prefix`, once `count` of them arrived. */
async function ask(text: string, prefix: string, count = 1): Promise<string[]> {
  const session = `sdk${++sessions}`;
  c.publish("user.v1.prompt", { type: "user_input", text, session_id: session });
  const got = () => replies.filter((r) => r.session === session && r.text.startsWith(prefix)).map((r) => r.text);
  await until(async () => got().length, (n) => n >= count, 20_000);
  await sleep(100);
  return got().sort();
}

describe("@astrid-os/sdk host calls", () => {
  it("capabilities.enumerate lists the manifest's; capabilities.check answers for a message's source capsule", async () => {
    const [caps] = await ask("sdk caps", "calls: caps");
    expect(caps).toBe("calls: caps fs_read,fs_write,host_process,identity,ipc_publish,kv,net bogus=false");
    expect(await ask("sdk probe", "calls: check", 2)).toEqual(["calls: check sdk-plain: false", "calls: check sdk-trusted: true"]);
  });

  it("http.streamStart reads a response as it arrives, through the guard; a loopback address is airlock-rejected", async () => {
    const { port } = server.address() as AddressInfo;
    expect(await ask(`sdk stream http://public.test:${port}/`, "calls: stream")).toEqual([expect.stringMatching(/^calls: stream status=200 bytes=100000 several=(true|false) header=sdk$/)]);
    expect(await ask(`sdk stream http://public.test:${port}/slow`, "calls: stream")).toEqual(["calls: stream status=200 bytes=10 several=true header=sdk"]);
    expect(await ask("sdk stream http://127.0.0.1:9/", "calls: stream")).toEqual(["calls: stream SysError:airlock-rejected"]);
    // At most 4 open at once; closing frees them.
    expect(await ask(`sdk streams http://public.test:${port}/slow`, "calls: streams")).toEqual(["calls: streams held=4 fifth=SysError:quota after-close=reopened"]);
  });

  it("process.spawn runs a declared command; an undeclared one is capability-denied", async () => {
    expect(await ask("sdk proc", "calls: proc")).toEqual(["calls: proc hi sdk ls=SysError:capability-denied"]);
  });

  it("fs.open: write, read, append handles through the VFS; a path outside fs_write is refused at open", async () => {
    expect(await ask("sdk files", "calls: files")).toEqual([
      "calls: files part=handle readonly=SysError:access closed=SysError:closed moved=hello handle! left=false outside=SysError:capability-denied",
    ]);
    expect(fs.readFileSync(path.join(d.home, "home", "default", "sdk-moved.txt"), "utf8")).toBe("hello handle!");
  });

  it("fs.hardLink, removeDirAll, canonicalize and readLink go through the VFS", async () => {
    expect(await ask("sdk fsx", "calls: fsx")).toEqual([
      "calls: fsx removed=2 again=SysError:already-exists linked=x canonical=home://sdk-x.txt not-link=SysError:unknown",
    ]);
    expect(fs.existsSync(path.join(d.home, "home", "default", "sdk-tree"))).toBe(false);
  });

  it("ipc.publishJsonAs: an uplink publishes for a linked principal; unlinked principals and non-uplinks are refused", async () => {
    expect(await ask("sdk as bob", "uplink: as")).toEqual(["uplink: as bob SysError:unknown"]);
    expect(astrid(["agent", "create", "bob"]).status).toBe(0);
    expect(astrid(["identity", "link", "web", "visitor-9", "bob"]).status).toBe(0);
    expect(await ask("sdk as bob", "", 2)).toEqual(["calls: as bob SysError:capability-denied", "uplink: as bob ok"]);
    expect(await until(async () => ((await c.request("KvGet", { scope: "bob:capsule:sdk-calls", key: "claimed" })).data as { value?: string } | null)?.value, (v) => v !== undefined, 10_000))
      .toBe('"bob from uplink"');
  });

  it("identity: link, resolve, listLinks, unlink; a taken user, createUser below `admin` and a capsule without `identity` are refused", async () => {
    expect(await ask("sdk ident discord 7 bob", "calls: ident")).toEqual([
      "calls: ident linked=ok resolved=bob links=cli/bob,discord/7,web/visitor-9 taken=SysError:already-linked unlinked=ok gone=SysError:link-not-found create=SysError:capability-denied",
    ]);
    expect(await ask("sdk whois web visitor-9", "", 2)).toEqual(["calls: whois bob", "uplink: whois SysError:capability-denied"]);
  });
});
