/**
 * The `@astrid-os/sdk` surface over a fake capsule API (the real daemon drives it in
 * spec/integration/astrid-os-sdk.test.ts): decorator rules, the bridge's state handling, error codes, and the
 * subscription buffers.
 */
import ts from "typescript";
import { createAstridOsSdk } from "../../../capsule-host/astrid-os-sdk";
import { toSysError } from "../../../capsule-host/astrid-os-sdk-errors";
import type { CapsuleApi, CapsuleEvent } from "../../../capsule-host/sdk";

/** A coded refusal as the host throws it. */
class Refusal extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/** A capsule API over an in-memory KV; `refuse` makes subscriptions to a pattern fail. */
function fakeHost(options: { refuse?: string } = {}) {
  const store = new Map<string, string>();
  const sinks: Array<{ pattern: string; sink: (e: CapsuleEvent) => void }> = [];
  const logs: string[] = [];
  const api = {
    log: { debug: (m: string) => logs.push(m), info: (m: string) => logs.push(m), warn: (m: string) => logs.push(m), error: (m: string) => logs.push(m) },
    kv: {
      get: async (k: string) => store.get(k) ?? null,
      set: async (k: string, v: string) => {
        await new Promise((r) => setTimeout(r, 1)); // a real round trip lets other handlers interleave
        store.set(k, v);
      },
      delete: async (k: string) => store.delete(k),
      list: async (p: string) => [...store.keys()].filter((k) => k.startsWith(p)),
    },
    ipc: { publish: async () => undefined, subscribe: async () => undefined },
    approval: { request: async () => ({ approved: true, decision: "approve_session" }) },
    elicit: { ask: async () => ({ value: "blue" }), hasSecret: async () => false, secret: async () => null },
  } as unknown as CapsuleApi;
  const sdk = createAstridOsSdk({
    api,
    env: { SET_EMPTY: "" },
    subscribe: async (pattern, sink) => {
      if (pattern === options.refuse) throw new Refusal("ASTRID_ERR_CAPABILITY_DENIED", `may not subscribe to ${pattern}`);
      sinks.push({ pattern, sink });
    },
  });
  const deliver = (topic: string, payload: unknown, seq = 1) => {
    for (const s of sinks) if (s.pattern === topic) s.sink({ topic, payload, source_id: "src", principal: "alice", seq });
  };
  return { sdk, module: sdk.modules["@astrid-os/sdk"] as Record<string, any>, store, logs, deliver };
}

/** Runs capsule source (standard decorators, compiled by tsc) with the SDK module as `sdk`. */
function load(module: Record<string, unknown>, source: string): void {
  const { outputText } = ts.transpileModule(source, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS } });
  new Function("sdk", "exports", outputText)(module, {});
}

describe("@astrid-os/sdk decorators and bridge", () => {
  it("runs mutable handlers one at a time, saving __state only when they succeed", async () => {
    const { sdk, module, store } = fakeHost();
    load(module, `
      const { capsule, tool } = sdk;
      @capsule class Counter {
        n = 0;
        @tool("bump", { mutable: true }) async bump() { const seen = this.n; await new Promise((r) => setTimeout(r, 5)); this.n = seen + 1; return this.n; }
        @tool("fail", { mutable: true }) fail() { this.n = 99; throw new Error("no"); }
        @tool("peek") peek() { return { n: this.n }; }
      }`);
    const def = sdk.definition()!;
    const results = await Promise.all([1, 2, 3].map(() => def.tools!.bump!.execute(undefined, {} as CapsuleApi)));
    expect(results.sort()).toEqual(["1", "2", "3"]);
    expect(store.get("__state")).toBe('{"n":3}');
    await expect(def.tools!.fail!.execute(undefined, {} as CapsuleApi)).rejects.toThrow("no");
    expect(store.get("__state")).toBe('{"n":3}');
    // Not mutable: a fresh instance, nothing loaded.
    expect(await def.tools!.peek!.execute(undefined, {} as CapsuleApi)).toBe('{"n":0}');
  });

  it("dispatches an action to the interceptor before a command of the same name; null leaves the payload", async () => {
    const { sdk, module } = fakeHost();
    load(module, `
      const { capsule, interceptor, command } = sdk;
      @capsule class C {
        @command("act") cmd() { return "command"; }
        @interceptor("act") icp(p) { return { seen: p.x }; }
        @command("quiet") quiet() { return null; }
      }`);
    const def = sdk.definition()!;
    const event = { topic: "t", payload: { x: 1 }, source_id: "s", seq: 1 };
    expect(await def.interceptors!.act!(event, {} as CapsuleApi)).toEqual({ seen: 1 });
    expect(await def.interceptors!.quiet!(event, {} as CapsuleApi)).toBeUndefined();
  });

  it("refuses misuse with the reference's messages", () => {
    const { module } = fakeHost();
    expect(() => load(module, `const { capsule } = sdk; @capsule class A {} @capsule class B {}`)).toThrow(/Only one @capsule class/);
    expect(() => load(fakeHost().module, `const { capsule, tool } = sdk; @capsule class A { @tool("x") a() {} @tool("x") b() {} }`)).toThrow(/declared twice/);
    expect(() => load(fakeHost().module, `const { tool } = sdk; class A { @tool("x") static a() {} }`)).toThrow(/public instance method/);
    expect(() => (fakeHost().module.tool("x") as (...a: unknown[]) => void)({}, "x", {})).toThrow(/experimentalDecorators/);
    const stray = fakeHost();
    load(stray.module, `const { install } = sdk; class A { @install a() {} }`);
    expect(() => stray.sdk.definition()).toThrow(/without a @capsule class/);
    expect(fakeHost().sdk.definition()).toBeUndefined();
  });
});

describe("@astrid-os/sdk calls", () => {
  it("codes refusals with the reference's tags and keeps the daemon's code", () => {
    const guard = toSysError("fetch GET http://127.0.0.1/", new Refusal("ASTRID_ERR_NET_ADDRESS_BLOCKED", "refused"));
    expect(guard).toMatchObject({ name: "SysError", kind: "HostError", code: "airlock-rejected", astridCode: "ASTRID_ERR_NET_ADDRESS_BLOCKED" });
    expect(guard.message).toBe("[HostError:airlock-rejected] fetch GET http://127.0.0.1/: refused");
    expect(toSysError("x", new Refusal("ASTRID_ERR_SOMETHING_NEW", "?")).code).toBe("unknown");
    const { module } = fakeHost();
    expect(() => module.http.installFetchPolyfill()).toThrow(expect.objectContaining({ code: "unsupported", kind: "ApiError" }));
  });

  it("keeps JSON in kv, pages keys and swaps only on a match", async () => {
    const { module, store } = fakeHost();
    await module.kv.set("a", { x: 1 });
    expect(store.get("a")).toBe('{"x":1}');
    expect(await module.kv.get("a")).toEqual({ x: 1 });
    expect(await module.kv.get("missing")).toBeUndefined();
    store.set("raw", "not json");
    await expect(module.kv.get("raw")).rejects.toMatchObject({ kind: "JsonError" });
    await expect(module.kv.setBytes("b", new Uint8Array([0xff]))).rejects.toMatchObject({ code: "invalid-input" });
    expect(await module.kv.cas("new", undefined, new TextEncoder().encode("1"))).toBe(true);
    expect(await module.kv.cas("new", undefined, new TextEncoder().encode("2"))).toBe(false);
    expect(store.get("new")).toBe("1");
  });

  it("maps env, approval and elicit answers to the reference's shapes", async () => {
    const { module } = fakeHost();
    expect(module.env.tryGet("SET_EMPTY")).toBe("");
    expect(module.env.tryGet("UNSET")).toBeUndefined();
    expect(module.env.get("UNSET")).toBe("");
    expect(await module.approval.requestDecision("push", "origin")).toBe("approved-session");
    expect(await module.elicit.select("colour", "Pick", ["blue", "red"])).toBe("blue");
    await expect(module.elicit.select("colour", "Pick", ["red"])).rejects.toThrow(/not in provided options/);
  });

  it("buffers a subscription's messages, drops the oldest when full, and times out empty", async () => {
    const { module, deliver } = fakeHost();
    const sub = module.ipc.subscribe("a.b");
    await sub.poll();
    for (let i = 1; i <= 1030; i++) deliver("a.b", { i }, i);
    const batch = await sub.poll();
    expect(batch.messages).toHaveLength(1024);
    expect(batch.messages[0].json()).toEqual({ i: 7 });
    expect(batch.messages[0].principal).toEqual({ tag: "verified", val: "alice" });
    expect([batch.dropped, batch.lagged]).toEqual([6n, 6n]);
    const started = Date.now();
    expect((await sub.recv(50)).messages).toEqual([]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    sub.close();
    await expect(sub.poll()).rejects.toThrow(/closed/);
  });

  it("raises a refused subscription on its first poll, as capability-denied", async () => {
    const { module } = fakeHost({ refuse: "secret.*" });
    const sub = module.ipc.subscribe("secret.*");
    await expect(sub.recv(10)).rejects.toMatchObject({ code: "capability-denied" });
  });
});
