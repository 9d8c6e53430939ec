import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { sweepTempFiles, writeFileAtomic } from "../../../../kernel/principals/atomic-file";

let dir: string;
beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "astrid-atomic-"))));
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("issue #9: atomic policy files", () => {
  it("writes 0600 whole files, and boot's sweep removes only what an interrupted write left behind", async () => {
    await writeFileAtomic(path.join(dir, "alice.toml"), 'groups = ["agent"]\n');
    expect(fs.statSync(path.join(dir, "alice.toml")).mode & 0o777).toBe(0o600);
    fs.writeFileSync(path.join(dir, ".bob.toml.0123456789ab.tmp"), "half a profi");
    fs.writeFileSync(path.join(dir, "notes.tmp"), "not ours");
    expect(await sweepTempFiles(dir)).toBe(1);
    expect(fs.readdirSync(dir).sort()).toEqual(["alice.toml", "notes.tmp"]);
    expect(await sweepTempFiles(path.join(dir, "missing"))).toBe(0);
  });
});
