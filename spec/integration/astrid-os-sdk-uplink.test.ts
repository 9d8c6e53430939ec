/**
 * A capsule written for the reference SDK bridging a platform through `uplink.register/send`, against the real
 * daemon: a linked platform user's message becomes their principal's prompt, the bundled assistant answers it in a
 * session kept per (uplink, user), and the capsule hears the answer. A capsule without `uplink = true`, an unknown
 * uplink id, an unlinked user and a 17th uplink are refused with coded errors.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { capsulesByName, CLI_BIN, connect, ROOT, sleep, spawnDaemon, stopDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const FIXTURE = path.join(ROOT, "spec", "fixtures", "astrid-os-sdk", "uplink");

let d: RunningDaemon;
let c: DaemonClient;
const replies: Array<{ session: string; text: string }> = [];

function astrid(args: string[]) {
  return spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8", timeout: 30_000 });
}

beforeAll(async () => {
  const workspace = tempHome();
  const root = path.join(workspace, ".astrid", "capsules");
  fs.cpSync(FIXTURE, path.join(root, "upl-plain"), { recursive: true });
  fs.cpSync(FIXTURE, path.join(root, "upl"), { recursive: true });
  const toml = path.join(root, "upl", "Capsule.toml");
  fs.writeFileSync(toml, fs.readFileSync(toml, "utf8").replace('name = "upl-plain"', 'name = "upl"').replace('default = "plain"', 'default = "uplink"').replace("[capabilities]\n", "[capabilities]\nuplink = true\n"));
  // The real bundle: the built-in assistant answers arithmetic without a model.
  d = await spawnDaemon({ args: ["--workspace", workspace], env: { ASTRID_BUNDLED_CAPSULES_DIR: undefined } });
  c = await connect(d);
  c.on("message", (m: IpcMessage) => {
    if (m.topic === "agent.v1.response") replies.push({ session: String(m.payload.session_id), text: String(m.payload.text) });
  });
  const states = async () => Object.fromEntries(Object.values(await capsulesByName(c)).map((m) => [m.name, m.last_error ?? m.state]));
  await until(states, (m) => ["upl", "upl-plain", "astrid-capsule-assistant"].every((n) => m[n] === "ready"), 30_000);
  expect(astrid(["agent", "create", "bob"]).status).toBe(0);
  expect(astrid(["identity", "link", "test", "u1", "bob"]).status).toBe(0);
}, 60_000);

afterAll(() => stopDaemon(d, c));

let sessions = 0;
/** The replies to `text` (in a session of its own) that start with `prefix`, once `count` of them arrived. */
async function ask(text: string, prefix: string | RegExp, count = 1): Promise<string[]> {
  const session = `up${++sessions}`;
  c.publish("user.v1.prompt", { type: "user_input", text, session_id: session });
  const got = () => replies.filter((r) => r.session === session && (typeof prefix === "string" ? r.text.startsWith(prefix) : prefix.test(r.text))).map((r) => r.text);
  await until(async () => got().length, (n) => n >= count, 20_000);
  await sleep(100);
  return got().sort();
}

/** The audit entries of `change` for capsule `name` (`astrid audit tail --json`). */
function audited(change: string, name: string): Array<Record<string, unknown>> {
  const r = astrid(["audit", "tail", "-n", "2000", "--json"]);
  return r.stdout.trim().split("\n").filter(Boolean).map((l) => (JSON.parse(l) as { action: Record<string, unknown> }).action)
    .filter((a) => a.type === "capsule_lifecycle" && a.change === change && a.capsule === name);
}

describe("@astrid-os/sdk uplink", () => {
  it("a linked platform user's message is their principal's prompt; the assistant answers it in the uplink's session", async () => {
    expect(await ask("up register chat test human", /^(plain|uplink): /, 2)).toEqual(["plain: register SysError:ASTRID_ERR_CAPABILITY_DENIED", "uplink: register uuid"]);
    expect(await ask("up send 0 u1 12 * (3 + 4)", "uplink: send")).toEqual(["uplink: send true"]);
    const answers = async () => JSON.parse((await ask("up heard", "uplink: heard"))[0]!.slice("uplink: heard ".length)) as string[];
    const first = await until(answers, (h) => h.some((a) => a.includes("84")), 20_000);
    const [principal, session] = first.find((a) => a.includes("84"))!.split(" ");
    expect(principal).toBe("bob");
    // The same user on the same uplink stays in the same session.
    expect(await ask("up send 0 u1 2 + 2", "uplink: send")).toEqual(["uplink: send true"]);
    const second = await until(answers, (h) => h.some((a) => / 4$|\b4\b/.test(a.split(" ").slice(2).join(" "))), 20_000);
    expect(second.filter((a) => a.startsWith("bob ")).every((a) => a.split(" ")[1] === session)).toBe(true);
    // The operator's connection is in none of those sessions: it saw no answer for bob.
    expect(replies.some((r) => r.session === session)).toBe(false);
  });

  it("refuses a capsule without `uplink = true`, an uplink id this run did not register, and an unlinked user", async () => {
    expect(await ask("up send 0 u1 hello", "plain: send")).toEqual(["plain: send SysError:ASTRID_ERR_CAPABILITY_DENIED"]);
    expect(await ask("up send 3f2504e0-4f89-11d3-9a0c-0305e82c3301 u1 hello", "uplink: send")).toEqual(["uplink: send SysError:ASTRID_ERR_REQUEST_INVALID"]);
    expect(await ask("up send 0 stranger hello", "uplink: send")).toEqual(["uplink: send SysError:ASTRID_ERR_IDENTITY_UNLINKED+hint"]);
    expect(await ask("up register - test chat", "uplink: register")).toEqual(["uplink: register SysError:ASTRID_ERR_REQUEST_INVALID"]);
    expect(await ask("up register x Not@Valid chat", "uplink: register")).toEqual(["uplink: register SysError:ASTRID_ERR_REQUEST_INVALID"]);
    expect(await ask("up register x test shouting", "uplink: register")).toEqual(["uplink: register SysError:ASTRID_ERR_REQUEST_INVALID"]);
    await until(async () => audited("denied", "upl-plain").length, (n) => n >= 2, 10_000);
  });

  it("allows at most 16 uplinks per run; registrations and sends are audited", async () => {
    // One uplink is registered by the first test.
    expect(await ask("up many", "uplink: many")).toEqual(["uplink: many 15 SysError:ASTRID_ERR_REQUEST_INVALID"]);
    await until(async () => audited("uplink_register", "upl").length, (n) => n >= 16, 10_000);
    const sends = await until(async () => audited("uplink_send", "upl"), (e) => e.length >= 2, 10_000);
    expect(sends[0]).toMatchObject({ claimed: "bob", platform: "test", platform_user_id: "u1" });
  });
});

describe("@astrid-os/sdk uplink under a publish limit", () => {
  let limited: RunningDaemon;
  let client: DaemonClient;
  const heard: Array<{ session: string; text: string }> = [];

  beforeAll(async () => {
    const workspace = tempHome();
    const dir = path.join(workspace, ".astrid", "capsules", "upl");
    fs.cpSync(FIXTURE, dir, { recursive: true });
    const toml = path.join(dir, "Capsule.toml");
    fs.writeFileSync(toml, fs.readFileSync(toml, "utf8").replace('name = "upl-plain"', 'name = "upl"').replace('default = "plain"', 'default = "uplink"').replace("[capabilities]\n", "[capabilities]\nuplink = true\n"));
    limited = await spawnDaemon({ args: ["--workspace", workspace], env: { ASTRID_CAPSULE_MAX_PUBLISHES_PER_SEC: "5" } });
    client = await connect(limited);
    client.on("message", (m: IpcMessage) => {
      if (m.topic === "agent.v1.response") heard.push({ session: String(m.payload.session_id), text: String(m.payload.text) });
    });
    const cli = (args: string[]) => spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: limited.home }, encoding: "utf8", timeout: 30_000 });
    expect(cli(["agent", "create", "bob"]).status).toBe(0);
    expect(cli(["identity", "link", "test", "u1", "bob"]).status).toBe(0);
    await until(async () => ((await client.request("GetCapsuleMetadata")).data as Array<{ name: string; state: string }>).find((m) => m.name === "upl")?.state, (s) => s === "ready", 30_000);
  }, 60_000);

  afterAll(async () => {
    await client?.close();
    if (limited) {
      limited.child.kill("SIGTERM");
      expect(await limited.exited).toBe(0);
    }
  });

  it("answers false for a message the capsule's publish limit refused", async () => {
    const say = async (text: string, session: string) => {
      client.publish("user.v1.prompt", { type: "user_input", text, session_id: session });
      return (await until(async () => heard.find((r) => r.session === session), (r) => r !== undefined, 20_000))!.text;
    };
    expect(await say("up register chat test chat", "l1")).toBe("uplink: register uuid");
    expect(await say("up burst 8 u1 hello", "l2")).toBe("uplink: burst true=5 false=3");
  });
});
