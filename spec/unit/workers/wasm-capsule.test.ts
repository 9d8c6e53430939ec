/**
 * The pure parts of a WebAssembly capsule's worker: the memory ceiling written into a module's memory section, and
 * the reference's mapping of a hook's `capsule-result`. The integration test (wasm-capsules) runs them for real.
 */
import { mapResult } from "../../../workers/wasm-capsule/hook-result";
import { capMemories } from "../../../workers/wasm-capsule/memory-limit";

/** A module with one memory section `limits` (flag, min[, max]) — each a one-byte LEB128 here. */
const moduleWith = (...limits: number[]) => Uint8Array.of(0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, limits.length + 1, 1, ...limits);
/** The memory section's body of a module built by `moduleWith` or returned by capMemories. */
const memorySection = (bytes: Uint8Array) => [...bytes.subarray(8)];

describe("capMemories", () => {
  const MiB = 1024 * 1024;

  it("adds a maximum to a memory without one, in whole pages", () => {
    // 64 MiB = 1024 pages = LEB128 0x80 0x08.
    expect(memorySection(capMemories(moduleWith(0x00, 2), 64 * MiB))).toEqual([5, 5, 1, 0x01, 2, 0x80, 0x08]);
  });

  it("lowers a larger maximum and keeps a smaller one", () => {
    expect(memorySection(capMemories(moduleWith(0x01, 1, 100), 64 * 65536))).toEqual([5, 4, 1, 0x01, 1, 64]);
    expect(memorySection(capMemories(moduleWith(0x01, 1, 3), 64 * MiB))).toEqual([5, 4, 1, 0x01, 1, 3]);
  });

  it("leaves other sections alone and refuses a memory that starts above the ceiling", () => {
    const custom = Uint8Array.of(0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 0, 3, 1, 0x78, 0xff);
    expect([...capMemories(custom, MiB)]).toEqual([...custom]);
    expect(() => capMemories(moduleWith(0x00, 20), MiB)).toThrow("its memory starts at 1280 KiB, above the 1048576 byte limit");
  });
});

describe("mapResult (the reference's hook result mapping)", () => {
  it("maps continue, final, deny and abort; anything else continues", () => {
    expect(mapResult({ action: "continue", data: '{"text":"x"}' })).toEqual({ action: "continue", data: { text: "x" } });
    expect(mapResult({ action: "continue" })).toEqual({ action: "continue" });
    expect(mapResult({ action: "final", data: '"done"' })).toEqual({ action: "final", data: "done" });
    expect(mapResult({ action: "deny", data: "not you" })).toEqual({ action: "deny", reason: "not you" });
    expect(mapResult({ action: "abort" })).toEqual({ action: "deny", reason: "denied by interceptor" });
    expect(mapResult({ action: "modify", data: "null" })).toEqual({ action: "continue" });
  });
});
