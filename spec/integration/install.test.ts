/**
 * InstallCapsule / `astrid capsule install <dir>` (reference §11 item 1: not implemented there): copy, load with
 * the install or upgrade hook, roll back to the previous copy when the new one does not come up.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { CLI_BIN, cleanup, connect, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

/** A capsule whose hooks record themselves in KV and whose replies name its version; `failUpgrade` makes upgrade throw. */
function capsuleDir(version: string, options: { failUpgrade?: boolean; name?: string } = {}): string {
  const dir = path.join(tempHome(), options.name ?? "installable");
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, "Capsule.toml"), [
    "[package]", `name = "${options.name ?? "installable"}"`, `version = "${version}"`, "[[component]]", 'file = "index.js"',
    "[capabilities]", 'kv = ["*"]', 'ipc_subscribe = ["user.v1.prompt"]', 'ipc_publish = ["agent.v1.response"]', "",
  ].join("\n"));
  fs.writeFileSync(path.join(dir, "index.js"), `module.exports = {
  async install(api) { await api.kv.set("installed", ${JSON.stringify(version)}); },
  async upgrade(api, from) {
    ${options.failUpgrade ? 'throw new Error("migration refused");' : ""}
    await api.kv.set("upgraded", from + " -> " + ${JSON.stringify(version)});
  },
  async setup(api) {
    await api.ipc.subscribe("user.v1.prompt", (e) => api.ipc.publish("agent.v1.response",
      { type: "agent_response", text: "installable " + ${JSON.stringify(version)}, is_final: true, session_id: e.payload.session_id }));
  },
};
`);
  return dir;
}

function astrid(home: string, args: string[]) {
  return spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8", timeout: 60_000 });
}

afterAll(cleanup);

describe("capsule install through the running daemon", () => {
  let d: RunningDaemon;
  let c: DaemonClient;
  const replies: IpcMessage[] = [];
  let n = 0;
  const root = () => path.join(d.home, "home", "default", ".local", "capsules");
  const answer = async () => {
    const session = `i${++n}`;
    c.publish("user.v1.prompt", { type: "user_input", text: "hi", session_id: session });
    const m = await until(() => replies.find((r) => r.payload.session_id === session), (r) => r !== undefined, 5000);
    return String(m!.payload.text);
  };
  const kv = async (key: string) => ((await c.request("KvGet", { scope: "default:capsule:installable", key })).data as { value: string } | null)?.value;

  beforeAll(async () => {
    d = await spawnDaemon({ args: ["--workspace", tempHome()] });
    c = await connect(d);
    c.on("message", (m: IpcMessage) => {
      if (m.topic === "agent.v1.response") replies.push(m);
    });
  });
  afterAll(async () => {
    await c.close();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  });

  it("installs a capsule: copied, its install hook run, answering", async () => {
    const r = astrid(d.home, ["capsule", "install", capsuleDir("1.0.0")]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(`Installed installable 1.0.0 into ${path.join(root(), "installable")}; it is ready.\n`);
    expect(await answer()).toBe("installable 1.0.0");
    expect(await kv("installed")).toBe("1.0.0");
  });

  it("installs a new version over it: the upgrade hook gets the old version", async () => {
    const r = astrid(d.home, ["capsule", "install", capsuleDir("2.0.0"), "--json"]);
    expect(JSON.parse(r.stdout)).toMatchObject({ name: "installable", version: "2.0.0", previous_version: "1.0.0", state: "ready", active: true });
    expect(await answer()).toBe("installable 2.0.0");
    expect(await kv("upgraded")).toBe("1.0.0 -> 2.0.0");
  });

  it("rolls back to the previous copy when the new one fails to load, leaving nothing half-done", async () => {
    const r = astrid(d.home, ["capsule", "install", capsuleDir("3.0.0", { failUpgrade: true })]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/installable 3\.0\.0 did not load: failed to load: upgrade hook failed: migration refused; the previous copy \(2\.0\.0\) was restored \[ASTRID_ERR_CAPSULE_INSTALL_FAILED\]/);
    expect(await answer()).toBe("installable 2.0.0");
    expect(fs.readFileSync(path.join(root(), "installable", "Capsule.toml"), "utf8")).toMatch(/version = "2\.0\.0"/);
    expect(fs.readdirSync(root())).toEqual(["installable"]);
  });

  it("runs concurrent installs of one capsule one after the other", async () => {
    const [a, b] = await Promise.all([
      c.request("InstallCapsule", { source: capsuleDir("2.1.0"), workspace: false }, { timeoutMs: 60_000 }),
      c.request("InstallCapsule", { source: capsuleDir("2.2.0"), workspace: false }, { timeoutMs: 60_000 }),
    ]);
    expect([a.status, b.status]).toEqual(["Success", "Success"]);
    expect(await answer()).toBe("installable 2.2.0");
    expect(fs.readdirSync(root())).toEqual(["installable"]);
    expect(astrid(d.home, ["capsule", "install", capsuleDir("2.0.0")]).status).toBe(0); // back to 2.0.0 for the next tests
  });

  it("refuses bad sources with coded errors and changes nothing", async () => {
    const notDir = path.join(tempHome(), "file.txt");
    fs.writeFileSync(notDir, "x");
    const empty = tempHome();
    const broken = capsuleDir("1.0.0", { name: "broken" });
    fs.writeFileSync(path.join(broken, "Capsule.toml"), '[package]\nname = "broken"\nversion = "1.0"\n');
    const cases: Array<[string[], RegExp]> = [
      [["capsule", "install", "/nonexistent/capsule"], /\/nonexistent\/capsule does not exist \[ASTRID_ERR_NOT_FOUND\]/],
      [["capsule", "install", notDir], /is not a directory.*\[ASTRID_ERR_REQUEST_INVALID\]/],
      [["capsule", "install", empty], /Capsule\.toml: cannot read.*\[ASTRID_ERR_MANIFEST_INVALID\]/],
      [["capsule", "install", broken], /broken\/Capsule\.toml:3: field package\.version: must be a semantic version.*\[ASTRID_ERR_MANIFEST_INVALID\]/],
      [["capsule", "install", path.join(root(), "installable")], /overlaps the capsules directory.*\[ASTRID_ERR_REQUEST_INVALID\]/],
      // Issue #12: a missing argument is a usage error (exit 2), with the subcommand's help.
      [["capsule", "install"], /astrid capsule install <dir>[\s\S]*Not enough non-option arguments.*\[ASTRID_ERR_INVALID_ARGUMENT\]/],
    ];
    for (const [args, message] of cases) {
      const r = astrid(d.home, args);
      expect(r.status).toBe(args.length === 2 ? 2 : 1);
      expect(r.stderr).toMatch(message);
    }
    // Over the wire: relative paths, remote sources and the socket policy capsule are refused too.
    expect(await c.request("InstallCapsule", { source: "relative/dir", workspace: false })).toMatchObject({ status: "Error", code: "ASTRID_ERR_REQUEST_INVALID" });
    expect(await c.request("InstallCapsule", { source: "@unicity-astrid/capsule-cli", workspace: false })).toMatchObject({ status: "Error", code: "ASTRID_ERR_NOT_IMPLEMENTED" });
    const cli = tempHome();
    fs.cpSync(path.join(__dirname, "..", "..", "capsules", "astrid-capsule-cli"), cli, { recursive: true });
    expect(await c.request("InstallCapsule", { source: cli, workspace: false })).toMatchObject({ status: "Error", code: "ASTRID_ERR_REQUEST_INVALID" });
    expect(fs.readdirSync(root())).toEqual(["installable"]);
    expect(await answer()).toBe("installable 2.0.0");
  });
});

describe("capsule install with no daemon running", () => {
  it("copies the capsule into place; the next daemon loads it and runs its install hook", async () => {
    const home = tempHome();
    const r = astrid(home, ["capsule", "install", capsuleDir("1.0.0")]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Installed installable 1\.0\.0 into .*; it loads \(and runs its install hook\) on the next start\./);
    const d = await spawnDaemon({ home, args: ["--workspace", tempHome()] });
    const c = await connect(d);
    try {
      expect((await c.request("KvGet", { scope: "default:capsule:installable", key: "installed" })).data).toMatchObject({ value: "1.0.0" });
    } finally {
      await c.close();
      d.child.kill("SIGTERM");
      expect(await d.exited).toBe(0);
    }
  });
});
