import { execFileSync } from "node:child_process";
import path from "node:path";
import ts from "typescript";
import * as sdk from "../../../capsule-host/sdk";

const root = path.resolve(__dirname, "..", "..", "..");

describe("issue #4: the authoring SDK", () => {
  it("is importable as astrid-daemon/capsule (and the client as astrid-daemon) from plain JavaScript", () => {
    const out = execFileSync(process.execPath, ["-e", `
      const { defineCapsule } = require("astrid-daemon/capsule");
      const { DaemonClient } = require("astrid-daemon");
      const def = { setup() {} };
      console.log(defineCapsule(def) === def, typeof DaemonClient.connect);
    `], { cwd: root, encoding: "utf8" });
    expect(out.trim()).toBe("true function");
  });
});

/** Compiles a TypeScript snippet using the decorators (as a capsule author's tsc would) and runs it with `sdk` in scope. */
function run(source: string): unknown {
  const { outputText } = ts.transpileModule(source, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS } });
  return new Function("sdk", `${outputText}\nreturn main();`)(sdk);
}

describe("issue #4: the decorator SDK", () => {
  it("builds the definition from a @capsule class, methods bound to one instance", async () => {
    const definition = run(`
      const { capsule, tool, interceptor, install, upgrade, setup, resolveDefinition } = sdk;
      @capsule class C {
        n = 41;
        @tool("add", { description: "adds" }) add(args) { return args.a + this.n; }
        @interceptor("on_x") onX(event) { return this.n + event.payload; }
        @install i(api) { return "installed " + api; }
        @upgrade u(api, from) { return "from " + from; }
        @setup s() { return this.n; }
      }
      function main() { return resolveDefinition(C, "c.js"); }
    `) as sdk.CapsuleDefinition;
    expect(definition.tools!.add!.description).toBe("adds");
    expect(await definition.tools!.add!.execute({ a: 1 }, {} as sdk.CapsuleApi)).toBe(42);
    expect(await definition.interceptors!.on_x!({ payload: 1 } as sdk.CapsuleEvent, {} as sdk.CapsuleApi)).toBe(42);
    expect(await definition.install!("api" as never)).toBe("installed api");
    expect(await definition.upgrade!({} as sdk.CapsuleApi, "1.0.0")).toBe("from 1.0.0");
    expect(await definition.setup!({} as sdk.CapsuleApi)).toBe(41);
  });

  it.each([
    ["a tool declared twice", `@capsule class C { @sdk.tool("a") f() {} @sdk.tool("a") g() {} }`, /@tool\("a"\) is declared twice/],
    ["a static method", `@capsule class C { @sdk.tool("a") static f() {} }`, /public instance methods only/],
    ["a class without @capsule", `class C { @sdk.tool("a") f() {} }`, /without @capsule/],
    ["two @setup methods", `@capsule class C { @sdk.setup a() {} @sdk.setup b() {} }`, /@setup is declared twice/],
  ])("refuses %s with a message naming it", (_name, body, message) => {
    expect(() => run(`const { capsule } = sdk; ${body} function main() { return sdk.resolveDefinition(C, "c.js"); }`)).toThrow(message);
  });

  it("refuses a module that exports neither a definition nor a @capsule class", () => {
    expect(() => sdk.resolveDefinition(42, "x.js")).toThrow(/x\.js must export a capsule definition object/);
  });
});
