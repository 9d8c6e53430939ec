/**
 * The uplink calls as WebAssembly components reach them, driven with a fake worker host: the per-domain
 * `astrid:uplink/host` package (its `error-code` cases) and the 0.1.0 world's `uplink-register`/`uplink-send`
 * (its `err("<code>: <message>")` strings), both over the kernel's `uplink.*` calls. The kernel side runs against the
 * real daemon in spec/integration/astrid-os-sdk-uplink.test.ts.
 */
import type { SyscallResult } from "../../../protocol/capsule-messages";
import type { GuestHost } from "../../../workers/wasm-capsule/host-imports";
import { hostImports } from "../../../workers/wasm-capsule/host-imports";
import { hostImportsV0 } from "../../../workers/wasm-capsule/host-imports-v0";

/** A worker host whose kernel answers `answers[call]` (or ok(null)), recording each call; nothing else is used. */
function fakeHost(answers: Record<string, SyscallResult>) {
  const calls: Array<[string, unknown[]]> = [];
  const host = {
    call: (name: string, ...args: unknown[]) => {
      calls.push([name, args]);
      return answers[name] ?? { ok: true, value: null };
    },
    publish: () => ({ ok: true, value: null }),
    env: {},
    capabilities: [],
  } as unknown as GuestHost;
  return { host, calls };
}
type Call = (...args: unknown[]) => unknown;
const ID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";

describe("astrid:uplink/host", () => {
  it("registers and sends through the kernel's uplink calls, under both package names", () => {
    const { host, calls } = fakeHost({ "uplink.register": { ok: true, value: ID }, "uplink.send": { ok: true, value: false } });
    const imports = hostImports(host);
    const pkg = imports["astrid:uplink/host"] as Record<string, Call>;
    expect(imports["astrid:uplink/host@1.0.0"]).toBe(pkg);
    expect(pkg.uplinkRegister!("chat", "test", "human")).toBe(ID);
    expect(pkg.uplinkSend!(ID, "u1", "hi")).toBe(false);
    expect(calls).toEqual([["uplink.register", ["chat", "test", "human"]], ["uplink.send", [ID, "u1", "hi"]]]);
  });

  it("throws the package's error-code cases for the kernel's refusals", () => {
    const refuse = (code: string) => fakeHost({ "uplink.send": { ok: false, code, message: "no" } }).host;
    const thrown = (host: GuestHost) => {
      try {
        (hostImports(host)["astrid:uplink/host"] as Record<string, Call>).uplinkSend!(ID, "u1", "hi");
      } catch (err) {
        return (err as { payload: unknown }).payload;
      }
      return "returned";
    };
    expect(thrown(refuse("ASTRID_ERR_CAPABILITY_DENIED"))).toEqual({ tag: "capability-denied" });
    expect(thrown(refuse("ASTRID_ERR_IDENTITY_UNLINKED"))).toEqual({ tag: "unlinked" });
    expect(thrown(refuse("ASTRID_ERR_REQUEST_INVALID"))).toEqual({ tag: "invalid-input" });
    expect(thrown(refuse("ASTRID_ERR_RATE_LIMITED"))).toEqual({ tag: "unknown", val: "ASTRID_ERR_RATE_LIMITED: no" });
  });
});

describe("astrid:capsule@0.1.0 uplink", () => {
  it("answers ok with the kernel's value, and a refusal as err(\"<code>: <message>\")", () => {
    const ok = fakeHost({ "uplink.register": { ok: true, value: ID }, "uplink.send": { ok: true, value: true } });
    const uplink = hostImportsV0(ok.host)["astrid:capsule/uplink"] as Record<string, Call>;
    expect(uplink.uplinkRegister!("chat", "test", "chat")).toEqual({ tag: "ok", val: ID });
    expect(uplink.uplinkSend!(ID, "u1", "hi")).toEqual({ tag: "ok", val: true });
    const refused = fakeHost({ "uplink.send": { ok: false, code: "ASTRID_ERR_IDENTITY_UNLINKED", message: "link them with `astrid identity link`" } });
    expect((hostImportsV0(refused.host)["astrid:capsule/uplink"] as Record<string, Call>).uplinkSend!(ID, "u9", "hi"))
      .toEqual({ tag: "err", val: "ASTRID_ERR_IDENTITY_UNLINKED: link them with `astrid identity link`" });
  });
});
