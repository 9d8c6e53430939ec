/**
 * The astrid:capsule@0.1.0 adapter over the per-domain host imports, driven with a fake worker host: its error
 * strings, its shapes, and which ABI a component's import list means. The integration test (wasm-capsule-v0) runs
 * it inside the daemon.
 */
import type { SyscallResult } from "../../../protocol/capsule-messages";
import type { GuestHost } from "../../../workers/wasm-capsule/host-imports";
import { hostImportsV0, importsV0 } from "../../../workers/wasm-capsule/host-imports-v0";

/** A worker host whose kernel answers `answers[call]` (or ok(null)), recording each call. */
function fakeHost(answers: Record<string, SyscallResult> = {}, env: Record<string, string> = {}) {
  const calls: Array<[string, unknown[]]> = [];
  const host: GuestHost = {
    call: (name, ...args) => {
      calls.push([name, args]);
      return answers[name] ?? { ok: true, value: null };
    },
    publish: (topic, payload) => {
      calls.push(["ipc.publish", [topic, payload]]);
      return answers["ipc.publish"] ?? { ok: true, value: null };
    },
    log: () => undefined,
    env,
    capabilities: [],
    caller: () => ({ sourceId: "" }),
    subscribe: () => 7n,
    unsubscribe: () => undefined,
    take: () => ({ messages: [], dropped: 0n }),
    wait: () => false,
    waitEvents: () => undefined,
    sleep: () => undefined,
    bindings: () => [{ handleId: 1n, action: "ask", topic: "a.b" }],
    signalReady: () => undefined,
  };
  return { host, calls };
}
type Call = (...args: unknown[]) => unknown;
const v0 = (host: GuestHost, iface: string) => hostImportsV0(host)[`astrid:capsule/${iface}`] as Record<string, Call>;

describe("importsV0", () => {
  it("tells the 0.1.0 world from the per-domain packages by jco's import names", () => {
    expect(importsV0(["astrid:capsule/ipc", "astrid:capsule/sys"])).toBe(true);
    expect(importsV0(["astrid:ipc/host", "astrid:kv/host"])).toBe(false);
    expect(importsV0([])).toBe(false);
  });
});

describe("hostImportsV0", () => {
  it("answers a kernel refusal as err(\"<code>: <message>\") and a value as ok", () => {
    const { host } = fakeHost({ "kv.get": { ok: false, code: "ASTRID_ERR_CAPABILITY_DENIED", message: "kv key k is not in kv" } });
    expect(v0(host, "kv").kvGet!("k")).toEqual({ tag: "err", val: "ASTRID_ERR_CAPABILITY_DENIED: kv key k is not in kv" });
    const ok = fakeHost({ "kv.get": { ok: true, value: "v" } });
    expect(v0(ok.host, "kv").kvGet!("k")).toEqual({ tag: "ok", val: new TextEncoder().encode("v") });
  });

  it("serves net-* over the per-domain net package: numbered listener and stream handles, framed reads and writes", () => {
    const { host, calls } = fakeHost({
      "net.bind_unix": { ok: true, value: { id: "l1", path: "/h/run/capsules/c.sock" } },
      "net.accept": { ok: true, value: { id: "s2", kind: "unix" } },
      "net.read": { ok: true, value: { status: "data", data: new Uint8Array([104, 105]) } },
      "net.write": { ok: true, value: { status: "written", written: 2 } },
    });
    const net = v0(host, "net");
    expect(net.netBindUnix!(0n)).toEqual({ tag: "ok", val: 1n });
    // One pre-bound listener per capsule: a second bind answers the same handle without a kernel call.
    expect(net.netBindUnix!(0n)).toEqual({ tag: "ok", val: 1n });
    expect(net.netAccept!(1n)).toEqual({ tag: "ok", val: 1n });
    expect(net.netRead!(1n)).toEqual({ tag: "ok", val: { tag: "data", val: new Uint8Array([104, 105]) } });
    expect(net.netWrite!(1n, new Uint8Array([1]))).toEqual({ tag: "ok", val: undefined });
    expect(net.netCloseStream!(1n)).toEqual({ tag: "ok", val: undefined });
    expect(net.netRead!(1n)).toEqual({ tag: "err", val: "net-read: handle 1 not found" });
    expect(calls.map(([name, args]) => [name, args[0]])).toEqual([
      ["net.bind_unix", undefined], ["net.accept", "l1"], ["net.read", "s2"], ["net.write", "s2"], ["net.close", "s2"],
    ]);
  });

  it("reads a missing config key as the empty string", () => {
    const { host } = fakeHost({}, { GREETING: "hi" });
    expect(v0(host, "sys").getConfig!("GREETING")).toEqual({ tag: "ok", val: "hi" });
    expect(v0(host, "sys").getConfig!("MISSING")).toEqual({ tag: "ok", val: "" });
  });

  it("maps fs-stat, elicit and approval answers to the 0.1.0 shapes", () => {
    const { host } = fakeHost({
      "fs.stat": { ok: true, value: { size: 5, is_dir: true, mtime_ms: 3_500 } },
      "elicit.ask": { ok: true, value: { value: "blue" } },
      "approval.request": { ok: true, value: { approved: true } },
    });
    expect(v0(host, "fs").fsStat!("cwd://x")).toEqual({ tag: "ok", val: { size: 5n, isDir: true, mtime: 3n } });
    expect(v0(host, "elicit").elicit!({ elicitType: "text", key: "colour", description: "Colour?" })).toEqual({ tag: "ok", val: '{"value":"blue"}' });
    expect(v0(host, "approval").requestApproval!({ action: "git push", targetResource: "origin" })).toEqual({ tag: "ok", val: { approved: true } });
  });

  it("numbers guest subscriptions after the interceptor handles, and refuses to unsubscribe an interceptor handle", () => {
    const { host, calls } = fakeHost();
    const ipc = v0(host, "ipc");
    expect(ipc.getInterceptorHandles!()).toEqual({ tag: "ok", val: [{ handleId: 1n, action: "ask", topic: "a.b" }] });
    expect(ipc.ipcSubscribe!("x.y")).toEqual({ tag: "ok", val: 2n });
    expect(calls).toContainEqual(["ipc.subscribe", ["x.y"]]);
    expect(ipc.ipcUnsubscribe!(1n)).toEqual({ tag: "err", val: expect.stringContaining("interceptor handle the host owns") });
    expect(ipc.ipcUnsubscribe!(2n)).toEqual({ tag: "ok", val: undefined });
    expect(ipc.ipcPoll!(2n)).toEqual({ tag: "err", val: "ipc-poll: subscription handle 2 not found" });
    // A recv that waits in vain: an empty envelope, on a guest subscription and on an interceptor handle alike.
    expect(ipc.ipcSubscribe!("x.z")).toEqual({ tag: "ok", val: 3n });
    expect(ipc.ipcRecv!(3n, 10n)).toEqual({ tag: "ok", val: { messages: [], dropped: 0n, lagged: 0n } });
    expect(ipc.ipcRecv!(1n, 10n)).toEqual({ tag: "ok", val: { messages: [], dropped: 0n, lagged: 0n } });
  });

  it("keeps the per-domain packages beside the 0.1.0 interfaces, versioned and not", () => {
    const imports = hostImportsV0(fakeHost().host);
    expect(Object.keys(imports)).toEqual(expect.arrayContaining(["astrid:ipc/host", "astrid:capsule/ipc", "astrid:capsule/ipc@0.1.0", "astrid:capsule/types"]));
  });
});
