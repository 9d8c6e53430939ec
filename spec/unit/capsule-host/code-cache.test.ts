import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { codeCacheFile, requireCached, writeCodeCache } from "../../../capsule-host/code-cache";

describe("code cache for large CommonJS files", () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "astrid-code-cache-"));
    file = path.join(dir, "lib.cjs");
    // Enough code that V8 writes a real cache, and a visible result.
    fs.writeFileSync(file, `${Array.from({ length: 200 }, (_, i) => `function f${i}(x) { return x + ${i}; }`).join("\n")}\nmodule.exports = { sum: f199(1), dir: __dirname };\n`);
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("runs the file as CommonJS, with or without a cache, and uses a cache made from it", () => {
    const first = requireCached(file, dir);
    expect(first.script.cachedDataRejected).toBeUndefined(); // no cache yet: compiled as usual
    expect(first.exports).toEqual({ sum: 200, dir });
    writeCodeCache(file, first.script, dir);
    const second = requireCached(file, dir);
    expect(second.script.cachedDataRejected).toBe(false);
    expect(second.exports).toEqual({ sum: 200, dir });
  });

  it("ignores a cache made from another version of the file", () => {
    writeCodeCache(file, requireCached(file, dir).script, dir);
    // Same length, other content: V8 alone would not notice (it checks the length); the recorded stamp does.
    fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace("f199(1)", "f198(2)"));
    fs.utimesSync(file, new Date(), new Date(Date.now() + 5000));
    const again = requireCached(file, dir);
    expect(again.script.cachedDataRejected).toBeUndefined();
    expect(again.exports).toEqual({ sum: 200, dir });
  });

  it("survives a cache file that is garbage, with or without a valid stamp", () => {
    fs.writeFileSync(codeCacheFile(file, dir), "garbage without a stamp line");
    expect(requireCached(file, dir).exports).toEqual({ sum: 200, dir });
    const st = fs.statSync(file);
    fs.writeFileSync(codeCacheFile(file, dir), Buffer.concat([Buffer.from(`${st.size} ${st.mtimeMs}\n`), Buffer.from("not v8 data")]));
    expect(requireCached(file, dir).exports).toEqual({ sum: 200, dir });
  });
});
