/**
 * Issue #8: the kernel's thread owns the socket, so no synchronous filesystem call may run on it once the daemon
 * serves. Files under kernel/ may call `…Sync(` only if they are on this list, each used before the socket is
 * bound (or, for the lock, at exit); anything filesystem-heavy belongs in a worker.
 */
import fs from "node:fs";
import path from "node:path";

const ROOT = path.resolve(__dirname, "..", "..", "..");

/** Boot-time files, with where they run. */
const BOOT_TIME: Record<string, string> = {
  "kernel/home.ts": "creates the home layout at boot",
  "kernel/home-lock.ts": "takes the home lock at boot and drops it at exit",
  "kernel/runtime-key.ts": "reads or creates the signing key at boot",
  "kernel/session-token.ts": "writes the token at boot (the CLI reads it)",
  "kernel/socket-prepare.ts": "checks and clears the socket path before binding",
  "kernel/boot-storage.ts": "checks the key and the database before the storage worker opens it",
};

function files(dir: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) return files(rel);
    return e.name.endsWith(".ts") ? [rel] : [];
  });
}

describe("issue #8: no synchronous fs on the kernel's thread after boot", () => {
  it("only boot-time files under kernel/ call …Sync(", () => {
    const offenders = files("kernel")
      .filter((file) => !(file in BOOT_TIME))
      .flatMap((file) =>
        fs.readFileSync(path.join(ROOT, file), "utf8").split("\n")
          .map((line, i) => ({ line: line.trim(), at: `${file}:${i + 1}` }))
          .filter(({ line }) => /\b[a-zA-Z]+Sync\(/.test(line) && !line.startsWith("//") && !line.startsWith("*")),
      )
      .map(({ at, line }) => `${at}: ${line}`);
    expect(offenders).toEqual([]);
  });

  it("the allowlist names files that exist (a stale entry would hide nothing, but says something false)", () => {
    for (const file of Object.keys(BOOT_TIME)) expect(fs.existsSync(path.join(ROOT, file))).toBe(true);
  });

  it("the check can fail: a sync call in a kernel file is found", () => {
    expect(/\b[a-zA-Z]+Sync\(/.test("const x = fs.readFileSync(p);")).toBe(true);
  });
});
