/**
 * Issue #4: the decorator style of the SDK, as a capsule author uses it — a TypeScript capsule importing
 * `astrid-daemon/capsule` from its own node_modules, type-checked and compiled here with the real compiler, then
 * loaded by the real daemon in its worker.
 */
import fs from "node:fs";
import path from "node:path";
import ts from "typescript";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { cleanup, connect, daemonLog, ROOT, sleep, spawnDaemon, tempHome, type RunningDaemon } from "../helpers/daemon";

let d: RunningDaemon;
let c: DaemonClient;
const replies: string[] = [];

/** Type-checks and compiles `<dir>/index.ts` to CommonJS beside it; returns the compiler's diagnostics as text. */
function compile(dir: string): string[] {
  const program = ts.createProgram([path.join(dir, "index.ts")], {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.Node16,
    moduleResolution: ts.ModuleResolutionKind.Node16,
    strict: true,
    skipLibCheck: true,
    types: [],
  });
  const emitted = program.emit();
  return [...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics].map((diag) => ts.flattenDiagnosticMessageText(diag.messageText, "\n"));
}

beforeAll(async () => {
  const workspace = tempHome();
  const dir = path.join(workspace, ".astrid", "capsules", "decorated");
  fs.cpSync(path.join(ROOT, "spec", "fixtures", "decorated"), dir, { recursive: true });
  fs.cpSync(path.join(ROOT, "spec", "fixtures", "capsules", "tool-caller"), path.join(workspace, ".astrid", "capsules", "tool-caller"), { recursive: true });
  // What `npm install astrid-daemon` gives a capsule project: the package under node_modules.
  fs.mkdirSync(path.join(workspace, "node_modules"));
  fs.symlinkSync(ROOT, path.join(workspace, "node_modules", "astrid-daemon"), "dir");
  expect(compile(dir)).toEqual([]);
  d = await spawnDaemon({ args: ["--workspace", workspace] });
  c = await connect(d);
  c.on("message", (m: IpcMessage) => {
    if (m.topic === "agent.v1.response") replies.push(String(m.payload.text));
  });
}, 60_000);
afterAll(async () => {
  await c?.close();
  d?.child.kill("SIGTERM");
  expect(await d?.exited).toBe(0);
  await cleanup();
});

async function reply(text: string): Promise<string> {
  const before = replies.length;
  c.publish("user.v1.prompt", { type: "user_input", text, session_id: "s1" });
  for (let i = 0; i < 50 && replies.length === before; i++) await sleep(100);
  return replies[before] ?? "(no reply)";
}

describe("issue #4: decorator SDK", () => {
  it("loads a @capsule class: its @install and @setup ran, its @tool is described", async () => {
    const meta = ((await c.request("GetCapsuleMetadata")).data as Array<{ name: string; state: string; tools: unknown[] }>).find((m) => m.name === "decorated");
    expect(meta).toMatchObject({ state: "ready", tools: [{ name: "shout", description: "Upper-cases text", input_schema: { type: "object" } }] });
    expect((await c.request("KvGet", { scope: "default:capsule:decorated", key: "installed" })).data).toMatchObject({ value: "decorated" });
    expect(daemonLog(d.home)).toMatch(/"capsule":"decorated".*"message":"decorated capsule set up"/);
  });

  it("calls the @interceptor method with `this` bound to the instance", async () => {
    expect(await reply("hi there")).toBe("decorated: hi there");
  });

  it("runs the @tool method for another capsule through the kernel's tool path", async () => {
    expect(await reply("shout hey")).toBe('tool: "HEY!"');
  });
});
