import { execFileSync } from "node:child_process";
import path from "node:path";

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
