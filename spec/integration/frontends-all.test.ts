/**
 * Issue #11, all at once: one persistent daemon serving the CLI (`astrid chat`, the session token), `astrid web`
 * driven by Debian's Chromium (credential `web`, two visitors) and the Discord bridge with a fake Discord (its own
 * credential, two users in two channels), concurrently. Every reply must reach its own frontend, session and
 * person only; `astrid status` then lists both frontends with their users.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { connect as sdkConnect, type AstridClient } from "../../client";
import { DiscordBridge } from "../../discord/bridge";
import type { SeamUser } from "../../discord/seam";
import { adminRequest } from "../../protocol/admin-request";
import { FakeDiscord } from "../helpers/fake-discord";
import { CLI_BIN, cleanup, connect, ROOT, sleep, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

let d: RunningDaemon;
let web: ChildProcess;
let webOut = "";
let browser: Browser;
let client: AstridClient;
let bridge: DiscordBridge;
const fake = new FakeDiscord();
const env = () => ({ ...process.env, ASTRID_HOME: d.home });

/** Runs `astrid …` to its end; resolves with its status and output. */
function astrid(args: string[]): Promise<{ status: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI_BIN, ...args], { env: env(), stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout!.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr!.on("data", (b: Buffer) => (err += b.toString()));
    child.once("exit", (status) => resolve({ status, out, err }));
  });
}

/** A browser visitor logged in through a fresh one-time URL, with the page ready. */
async function visitor(used: Set<string>): Promise<Page> {
  const url = await until(() => [...webOut.matchAll(/(http:\/\/\S+\?token=\S+)/g)].map((m) => m[1]!).filter((u) => !used.has(u)).at(-1), (u) => u !== undefined, 10_000);
  used.add(url!);
  const page = await (await browser.newContext()).newPage();
  await page.goto(url!);
  await page.waitForSelector("#st-state:text('running')", { timeout: 10_000 });
  return page;
}

async function pageReply(page: Page, text: string): Promise<string> {
  await page.fill("#prompt", text);
  await page.click("#send");
  const el = page.locator(".msg.assistant[data-turn='1'][data-final='true']");
  await el.waitFor({ timeout: 15_000 });
  return el.innerText();
}

beforeAll(async () => {
  const workspace = tempHome();
  fs.cpSync(path.join(ROOT, "spec", "fixtures", "discord", "talker"), path.join(workspace, ".astrid", "capsules", "talker"), { recursive: true });
  d = await spawnDaemon({ args: ["--workspace", workspace] });
  web = spawn(process.execPath, [CLI_BIN, "web", "--port", "0"], { env: env(), stdio: ["ignore", "pipe", "pipe"] });
  web.stdout!.on("data", (b: Buffer) => (webOut += b.toString()));
  await until(() => /serving http/.test(webOut), Boolean, 20_000);
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true });
  const added = await astrid(["frontend", "add", "discord-all", "--platform", "discord", "--unlinked", "restricted"]);
  expect(added.status).toBe(0);
  const op = await connect(d);
  await adminRequest(op, "AgentCreate", { name: "discord-all", groups: ["restricted"], grants: ["self:capsule:list"] });
  await op.close();
  client = await sdkConnect({ home: d.home, credential: "discord-all", clientName: "discord (fake)" });
  bridge = new DiscordBridge({ client, seam: fake });
  await bridge.start();
}, 60_000);

afterAll(async () => {
  bridge?.close();
  await client?.close();
  await browser?.close();
  if (web && web.exitCode === null) {
    const exited = new Promise((r) => web.once("exit", r));
    web.kill("SIGTERM");
    await exited;
  }
  d?.child.kill("SIGTERM");
  await d?.exited;
  await cleanup();
});

describe("issue #11: the CLI, astrid web and the Discord bridge on one daemon at once", () => {
  it("every reply reaches only its own frontend, session and person", async () => {
    const used = new Set<string>();
    const pageA = await visitor(used);
    const pageB = await visitor(used);
    const ann: SeamUser = { id: "80351110224678920", displayName: "ann", bot: false };
    const ben: SeamUser = { id: "80351110224678921", displayName: "ben", bot: false };
    const [chanA, chanB] = ["500000000000000001", "500000000000000002"];
    const markers = ["cli-one", "cli-two", "web-a", "web-b", "dc-ann", "dc-ben"];
    // All six at once, each streaming (two deltas 1.2 s apart) so the turns overlap in time.
    fake.post(chanA, ann, `stream: ${markers[4]}`, { mention: true });
    fake.post(chanB, ben, `stream: ${markers[5]}`, { mention: true });
    const [cli1, cli2, webA, webB] = await Promise.all([
      astrid(["chat", "--json", "-p", `stream: ${markers[0]}`]),
      astrid(["chat", "--json", "-p", `stream: ${markers[1]}`]),
      pageReply(pageA, `stream: ${markers[2]}`),
      pageReply(pageB, `stream: ${markers[3]}`),
    ]);
    expect(cli1.status).toBe(0);
    expect(cli2.status).toBe(0);
    // --json: the final reply of the CLI's own session (the plain output shows only the streamed deltas).
    expect(JSON.parse(cli1.out)).toMatchObject({ response: `part one part two ${markers[0]}` });
    expect(JSON.parse(cli2.out)).toMatchObject({ response: `part one part two ${markers[1]}` });
    expect(webA).toBe(`part one part two ${markers[2]}`);
    expect(webB).toBe(`part one part two ${markers[3]}`);
    const inA = await until(() => fake.inChannel(chanA).map((m) => m.content), (c) => c.includes(`part one part two ${markers[4]}`), 15_000);
    const inB = await until(() => fake.inChannel(chanB).map((m) => m.content), (c) => c.includes(`part one part two ${markers[5]}`), 15_000);
    await sleep(500);
    // Nobody saw anybody else's marker.
    const seen: Record<string, string> = {
      [markers[0]!]: cli1.out + cli1.err,
      [markers[1]!]: cli2.out + cli2.err,
      [markers[2]!]: await pageA.locator("#messages").innerText(),
      [markers[3]!]: await pageB.locator("#messages").innerText(),
      [markers[4]!]: [...inA, ...fake.inChannel(chanA).flatMap((m) => m.history.map((h) => h.content))].join("\n"),
      [markers[5]!]: [...inB, ...fake.inChannel(chanB).flatMap((m) => m.history.map((h) => h.content))].join("\n"),
    };
    for (const [own, text] of Object.entries(seen)) {
      expect(text).toContain(own);
      for (const other of markers.filter((m) => m !== own)) expect(text).not.toContain(other);
    }
    // The fake Discord only got messages in the two channels it was written in.
    expect(new Set(fake.messages.map((m) => m.channel))).toEqual(new Set([chanA, chanB]));

    const status = await astrid(["status", "--json"]);
    const clients = (JSON.parse(status.out) as { clients: Array<Record<string, unknown>> }).clients;
    expect(clients.find((c) => c.frontend === "web")).toMatchObject({ via: "frontend", client_name: "astrid web", users: 2 });
    expect(clients.find((c) => c.frontend === "discord-all")).toMatchObject({ via: "frontend", client_name: "discord (fake)", users: 2, sessions: 2 });
    const human = await astrid(["status"]);
    expect(human.out).toContain("Frontends: 2 connected");
    expect(human.out).toMatch(/- astrid web \(credential web\): 2 users, 2 sessions, /);
    expect(human.out).toMatch(/- discord \(fake\) \(credential discord-all\): 2 users, 2 sessions, /);
  }, 60_000);
});
