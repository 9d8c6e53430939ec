import { loadOrder } from "../../../kernel/capsules/load-order";
import type { LoadedManifest } from "../../../protocol/capsule-manifest";

function capsule(name: string, opts: { imports?: Record<string, Record<string, unknown>>; exports?: Record<string, Record<string, unknown>>; uplink?: boolean } = {}): LoadedManifest {
  return {
    dir: `/c/${name}`,
    file: `/c/${name}/Capsule.toml`,
    warnings: [],
    manifest: {
      package: { name, version: "1.0.0" },
      component: [],
      imports: opts.imports ?? {},
      exports: opts.exports ?? {},
      capabilities: { uplink: opts.uplink ?? false } as never,
      env: {},
      command: [],
      interceptor: [],
      uplink: [],
    } as never,
  };
}

const names = (r: ReturnType<typeof loadOrder>) => r.order.map((m) => m.manifest.package.name);

describe("issue #4: load order", () => {
  it("puts exporters before the importers their versions satisfy, uplinks first", () => {
    const r = loadOrder([
      capsule("react", { imports: { astrid: { llm: "^1.2" } } }),
      capsule("cli", { uplink: true }),
      capsule("anthropic", { exports: { astrid: { llm: "1.4.0" } } }),
    ]);
    expect(names(r)).toEqual(["cli", "anthropic", "react"]);
    expect(r.unmet).toEqual([]);
  });

  it("reports unmet imports (a version that does not satisfy counts as unmet), optional ones apart", () => {
    const r = loadOrder([
      capsule("a", { imports: { astrid: { llm: "^2", tools: { version: "^1", optional: true } } } }),
      capsule("b", { exports: { astrid: { llm: "1.0.0" } } }),
    ]);
    expect(r.unmet).toEqual(["a needs astrid/llm@^2"]);
    expect(r.unmetOptional).toEqual(["a needs astrid/tools@^1"]);
    expect(names(r)).toEqual(["a", "b"]);
  });

  it("reports a cycle and falls back to discovery order; flags duplicate exporters", () => {
    const r = loadOrder([
      capsule("x", { imports: { n: { y: "*" } }, exports: { n: { x: "1.0.0" } } }),
      capsule("y", { imports: { n: { x: "*" } }, exports: { n: { y: "1.0.0" } } }),
      capsule("z", { exports: { n: { x: "1.0.0" } } }),
    ]);
    expect(r.cycle.sort()).toEqual(["x", "y"]);
    expect(names(r)).toEqual(["x", "y", "z"]);
    expect(r.duplicates).toEqual(["n/x"]);
  });
});
