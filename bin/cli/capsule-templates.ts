/**
 * The files `astrid capsule new` writes: a manifest, a module offering one slash command and one tool, a README and
 * a test — in plain JavaScript (loads as written) or TypeScript with the `@capsule` decorators (built to
 * `dist/index.js`). Only text here; `capsule-scaffold.ts` validates the name and writes them.
 */

/** What the templates are filled with. */
export interface TemplateNames {
  /** The capsule's package name (`[a-z0-9-]+`). */
  name: string;
  /** Its slash command (the capsule's name). */
  command: string;
  /** Its tool (`<name>_greet`, underscores: a function name a model agent can use). */
  tool: string;
  /** A class name for the TypeScript template. */
  className: string;
}

/** The names derived from a (valid) capsule name. */
export function templateNames(name: string): TemplateNames {
  const words = name.split("-").filter((w) => w !== "");
  const pascal = words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join("");
  return { name, command: name, tool: `${name.replace(/-/g, "_")}_greet`, className: /^[A-Za-z]/.test(pascal) ? pascal : `Capsule${pascal}` };
}

/** `Capsule.toml`; `entry` is the module the daemon loads. */
export function manifest(n: TemplateNames, entry: string): string {
  return `# ${n.name}: made by \`astrid capsule new\`. Edit and save: a running daemon reloads it.
[package]
name = "${n.name}"
version = "0.1.0"
description = "Greets people: the /${n.command} command and the ${n.tool} tool"

[[component]]
file = "${entry}"

[capabilities]
# What the capsule may do; anything else is refused (and audited). See docs/capsule-runtime.md.
ipc_subscribe = ["cli.v1.command.execute"]
ipc_publish = ["agent.v1.response"]

[[command]]
name = "${n.command}"
description = "Say hello: /${n.command} [name]"
`;
}

/** The JavaScript module (CommonJS, no dependencies). */
export function javascriptModule(n: TemplateNames): string {
  return `// ${n.name}: a slash command (/${n.command}) and a tool (${n.tool}). Edit and save: a running daemon reloads it.

/** The greeting both the command and the tool give. */
function greeting(who) {
  return \`Hello, \${who}! (from ${n.name})\`;
}

/** The turn a frontend put in the command's context, echoed so it can match the reply to its turn. */
function turnOf(context) {
  return context !== null && typeof context === "object" && typeof context.turn_id === "string" ? { turn_id: context.turn_id } : {};
}

/** @type {import("astrid-daemon/capsule").CapsuleDefinition} */
module.exports = {
  tools: {
    ${n.tool}: {
      description: "Greets someone by name",
      inputSchema: { type: "object", properties: { name: { type: "string" } } },
      execute: (args) => greeting(args !== null && typeof args === "object" && typeof args.name === "string" && args.name !== "" ? args.name : "world"),
    },
  },
  async setup(api) {
    await api.ipc.subscribe("cli.v1.command.execute", async (event) => {
      const { text, session_id: session = "default", context } = event.payload ?? {};
      if (typeof text !== "string") return;
      const [command, ...rest] = text.trim().replace(/^\\//, "").split(/\\s+/);
      if (command !== ${JSON.stringify(n.command)}) return; // another capsule's command
      const reply = greeting(rest.join(" ") || "world");
      await api.ipc.publish("agent.v1.response", { type: "agent_response", text: reply, is_final: true, session_id: session, ...turnOf(context) });
    });
    api.log.info("${n.name} is ready");
  },
};

module.exports.greeting = greeting;
`;
}

/** The TypeScript module (`src/index.ts`, the `@capsule` decorator style). */
export function typescriptModule(n: TemplateNames): string {
  return `// ${n.name}: a slash command (/${n.command}) and a tool (${n.tool}). Edit, then \`npm run build\`: a running daemon
// reloads the built dist/index.js.
import { capsule, setup, tool, type CapsuleApi, type CapsuleEvent } from "astrid-daemon/capsule";

interface CommandPayload {
  text?: unknown;
  session_id?: string;
  context?: { turn_id?: unknown } | null;
}

/** The greeting both the command and the tool give. */
export function greeting(who: string): string {
  return \`Hello, \${who}! (from ${n.name})\`;
}

@capsule
export default class ${n.className} {
  @tool(${JSON.stringify(n.tool)}, { description: "Greets someone by name", inputSchema: { type: "object", properties: { name: { type: "string" } } } })
  greet(args: { name?: unknown } | null): string {
    return greeting(typeof args?.name === "string" && args.name !== "" ? args.name : "world");
  }

  @setup
  async start(api: CapsuleApi): Promise<void> {
    await api.ipc.subscribe("cli.v1.command.execute", async (event: CapsuleEvent) => {
      const { text, session_id: session = "default", context } = (event.payload ?? {}) as CommandPayload;
      if (typeof text !== "string") return;
      const [command, ...rest] = text.trim().replace(/^\\//, "").split(/\\s+/);
      if (command !== ${JSON.stringify(n.command)}) return; // another capsule's command
      const turn = typeof context?.turn_id === "string" ? { turn_id: context.turn_id } : {};
      await api.ipc.publish("agent.v1.response", { type: "agent_response", text: greeting(rest.join(" ") || "world"), is_final: true, session_id: session, ...turn });
    });
    api.log.info("${n.name} is ready");
  }
}
`;
}

/**
 * The capsule's test, with Node's own runner: its logic directly (`node --test test/` needs nothing else), and the
 * capsule loaded in a real daemon through `astrid-daemon/testing` (run by `astrid capsule test .`; skipped otherwise).
 */
export function testFile(n: TemplateNames, ts: boolean): string {
  const load = ts
    ? `// The built module (npm run build first); its default export is the @capsule class.
const built = require("../dist/index.js");
const definition = { tools: { ${n.tool}: { execute: (args) => new built.default().greet(args) } } };
const greeting = built.greeting;`
    : `const definition = require("../index.js");
const greeting = definition.greeting;`;
  return `// \`astrid capsule test .\` runs all of this against a real daemon on a temporary home; \`node --test test/\`
// runs the logic tests alone (the daemon tests are skipped: nothing provides astrid-daemon/testing there).
const test = require("node:test");
const assert = require("node:assert");
${load}

let capsuleTest = (name) => test(name, { skip: "needs a daemon: run \`astrid capsule test .\`" }, () => {});
try {
  ({ capsuleTest } = require("astrid-daemon/testing"));
} catch (err) {
  if (err.code !== "MODULE_NOT_FOUND") throw err;
}

test("the tool greets by name", () => {
  assert.strictEqual(definition.tools.${n.tool}.execute({ name: "Ada" }), "Hello, Ada! (from ${n.name})");
});

test("the tool greets the world without a name", () => {
  assert.strictEqual(definition.tools.${n.tool}.execute({}), "Hello, world! (from ${n.name})");
});

test("the greeting names the capsule", () => {
  assert.match(greeting("you"), /${n.name}/);
});

capsuleTest("the daemon serves the tool", async (t) => {
  assert.deepStrictEqual(await t.tools(), ["${n.tool}"]);
  assert.strictEqual(await t.callTool("${n.tool}", { name: "Ada" }), "Hello, Ada! (from ${n.name})");
});

capsuleTest("the /${n.command} command answers", async (t) => {
  assert.strictEqual(await t.command("/${n.command} Ada"), "Hello, Ada! (from ${n.name})");
});
`;
}

/** `package.json` of a TypeScript capsule: the SDK's types and the build. */
export function packageJson(n: TemplateNames, sdkVersion: string): string {
  return `${JSON.stringify({
    name: n.name,
    version: "0.1.0",
    private: true,
    scripts: { build: "tsc -p tsconfig.json", watch: "tsc -p tsconfig.json --watch", test: "npm run build && node --test test/" },
    devDependencies: { "astrid-daemon": `^${sdkVersion}`, typescript: "^5.2.0" },
  }, null, 2)}\n`;
}

/** `tsconfig.json` of a TypeScript capsule: standard decorators (TypeScript ≥ 5.2), CommonJS out to `dist/`. */
export const TSCONFIG = `${JSON.stringify({
  compilerOptions: {
    target: "ES2022",
    module: "Node16",
    moduleResolution: "Node16",
    strict: true,
    skipLibCheck: true,
    types: [],
    rootDir: "src",
    outDir: "dist",
  },
  include: ["src"],
}, null, 2)}\n`;

/** The capsule's README. */
export function readme(n: TemplateNames, ts: boolean): string {
  const build = ts
    ? `
## Build

The daemon loads \`dist/index.js\`, built from \`src/index.ts\` (\`astrid capsule new\` built it once for you):

\`\`\`
npm install          # typescript, and astrid-daemon for the @capsule SDK's types
npm run build        # tsc: src/index.ts → dist/index.js (npm run watch rebuilds on each save)
\`\`\`

A running daemon reloads the capsule when \`dist/index.js\` changes.
`
    : "";
  return `# ${n.name}

A capsule made by \`astrid capsule new\`: the slash command \`/${n.command}\` and the tool \`${n.tool}\`.
Edit ${ts ? "`src/index.ts` and rebuild" : "`index.js` and save"}: a running daemon reloads it, and \`astrid chat\` says so
(or shows where it failed to load).
${build}
## Try it

\`\`\`
astrid chat                                         # then: /${n.command} Ada
astrid tool call ${n.name}.${n.tool} --args '{"name":"Ada"}'
astrid logs --capsule ${n.name} -f                 # its log lines
\`\`\`

## Test

\`\`\`
${"astrid capsule test .".padEnd(24)}# the whole test, against a daemon of its own on a temporary home
${(ts ? "npm test" : "node --test test/").padEnd(24)}# the logic tests alone (the daemon tests are skipped)
\`\`\`

## Remove

\`\`\`
astrid capsule remove ${n.name}
\`\`\`
`;
}
