/**
 * A small capsule for tests that edit, kill or flood: it answers every prompt with `<tag>: <text>` in the prompt's
 * session (or, with `publish` false, takes prompts and answers nothing). The tag is also the first line of its
 * module, so rewriting it with another tag changes its files (a hot reload).
 */
import fs from "node:fs";
import path from "node:path";

/** Writes the capsule `name` under `root`; returns its directory. */
export function writeTagCapsule(root: string, name: string, tag: string, publish = true): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "Capsule.toml"), [
    "[package]", `name = "${name}"`, 'version = "1.0.0"', "", "[[component]]", 'file = "index.js"', "",
    "[capabilities]", 'ipc_subscribe = ["user.v1.prompt"]', 'ipc_publish = ["agent.v1.response"]', "",
  ].join("\n"));
  writeTagCode(dir, tag, publish);
  return dir;
}

/** Rewrites the capsule's module with another tag. */
export function writeTagCode(dir: string, tag: string, publish = true): void {
  const reply = publish
    ? `api.ipc.publish("agent.v1.response", { type: "agent_response", text: ${JSON.stringify(tag)} + ": " + e.payload.text, is_final: true, session_id: e.payload.session_id })`
    : "undefined";
  fs.writeFileSync(path.join(dir, "index.js"), `// ${tag}
module.exports = {
  async setup(api) {
    await api.ipc.subscribe("user.v1.prompt", (e) => ${reply});
  },
};
`);
}
