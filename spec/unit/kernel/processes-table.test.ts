/**
 * The process table's limits (8 background per capsule, the principal's quota, 16 runs, reservations that cannot
 * overshoot), what a run's end and the daemon's stop take, and one real process's stop: SIGTERM, then SIGKILL
 * after the grace, its whole process group with it.
 */
import fs from "node:fs";
import { isAstridError } from "../../../protocol/errors";
import { ManagedProcess } from "../../../kernel/processes/managed-process";
import { MAX_BACKGROUND_PER_CAPSULE, MAX_EXITED_KEPT, MAX_FOREGROUND_PER_CAPSULE, ProcessTable } from "../../../kernel/processes/process-table";

/** A stand-in for a process: running until `exit()`. */
function fakeProcess() {
  let resolve!: () => void;
  const finished = new Promise<void>((r) => (resolve = r));
  const fake = {
    running: true,
    destroyed: "" as string,
    finished,
    destroy(reason: string) {
      fake.destroyed = reason;
    },
    exit() {
      fake.running = false;
      resolve();
    },
  };
  return fake;
}
type Fake = ReturnType<typeof fakeProcess>;
const asProc = (f: Fake) => f as unknown as ManagedProcess;

function codeOf(fn: () => unknown): string {
  try {
    fn();
    return "returned";
  } catch (err) {
    return isAstridError(err) ? err.code : String(err);
  }
}

describe("ProcessTable", () => {
  it("allows 8 background processes per capsule; reservations count; an exit frees a place", async () => {
    const table = new ProcessTable<object>();
    const run = {};
    const slots = Array.from({ length: MAX_BACKGROUND_PER_CAPSULE }, () => table.reserve(run, "cap", "p", true, 100));
    // Eight reserved but not yet started: a ninth concurrent spawn is already refused.
    expect(codeOf(() => table.reserve(run, "cap", "p", true, 100))).toBe("ASTRID_ERR_PROCESS_LIMIT");
    const fakes = slots.map((slot) => {
      const f = fakeProcess();
      table.addBackground(run, slot, asProc(f), ["sleep"]);
      return f;
    });
    expect(table.runningBackground(run)).toBe(8);
    expect(codeOf(() => table.reserve(run, "cap", "p", true, 100))).toBe("ASTRID_ERR_PROCESS_LIMIT");
    // Another capsule is not affected.
    expect(codeOf(() => table.reserve({}, "other", "p", true, 100))).toBe("returned");
    fakes[0]!.exit();
    await fakes[0]!.finished;
    expect(codeOf(() => table.reserve(run, "cap", "p", true, 100))).toBe("returned");
  });

  it("applies the principal's max_background_processes across capsules", () => {
    const table = new ProcessTable<object>();
    table.reserve({}, "a", "alice", true, 2);
    table.reserve({}, "b", "alice", true, 2);
    expect(codeOf(() => table.reserve({}, "c", "alice", true, 2))).toBe("ASTRID_ERR_PROCESS_LIMIT");
    expect(codeOf(() => table.reserve({}, "c", "bob", true, 2))).toBe("returned");
  });

  it("allows 16 process.run calls per capsule at once; a released slot is free again", () => {
    const table = new ProcessTable<object>();
    const run = {};
    const slots = Array.from({ length: MAX_FOREGROUND_PER_CAPSULE }, () => table.reserve(run, "cap", "p", false, 8));
    expect(codeOf(() => table.reserve(run, "cap", "p", false, 8))).toBe("ASTRID_ERR_PROCESS_LIMIT");
    table.release(run, slots[0]!);
    expect(codeOf(() => table.reserve(run, "cap", "p", false, 8))).toBe("returned");
  });

  it("takeAll hands over the running processes; one that starts after it is destroyed at once", () => {
    const table = new ProcessTable<object>();
    const run = {};
    const running = fakeProcess();
    table.addBackground(run, table.reserve(run, "cap", "p", true, 8), asProc(running), ["sleep"]);
    const late = table.reserve(run, "cap", "p", false, 8);
    expect(table.takeAll(run)).toEqual([running]);
    const f = fakeProcess();
    expect(codeOf(() => table.addForeground(run, late, asProc(f)))).toBe("ASTRID_ERR_CAPSULE_UNAVAILABLE");
    expect(f.destroyed).toBe("the capsule stopped");
    expect(table.takeAll(run)).toEqual([]);
  });

  it("after closeAll nothing new starts", () => {
    const table = new ProcessTable<object>();
    table.closeAll();
    expect(codeOf(() => table.reserve({}, "cap", "p", false, 8))).toBe("ASTRID_ERR_SHUTTING_DOWN");
    expect(table.closeAll()).toEqual([]);
  });

  it("keeps the logs of the newest 8 exited background processes", async () => {
    const table = new ProcessTable<object>();
    const run = {};
    const ids: string[] = [];
    for (let i = 0; i < MAX_EXITED_KEPT + 3; i++) {
      const f = fakeProcess();
      ids.push(table.addBackground(run, table.reserve(run, "cap", "p", true, 100), asProc(f), ["x"]).id);
      f.exit();
      await f.finished;
      await Promise.resolve();
    }
    expect(ids.filter((id) => table.get(run, id) !== undefined)).toEqual(ids.slice(3));
  });
});

describe("ManagedProcess", () => {
  it("captures output and the exit code, and feeds stdin", async () => {
    const proc = await ManagedProcess.start({ file: "/bin/sh", args: ["-c", "cat; echo err >&2; exit 3"], cwd: "/", env: { PATH: "/usr/bin:/bin" }, stdin: "in" });
    await proc.finished;
    expect([proc.stdout.text(), proc.stderr.text(), proc.exitCode, proc.signal, proc.running]).toEqual(["in", "err\n", 3, null, false]);
    expect(proc.durationMs).toEqual(expect.any(Number));
  });

  it("stop: SIGTERM to the group, SIGKILL after the grace for what ignores it; children go too", async () => {
    const proc = await ManagedProcess.start({ file: "/bin/sh", args: ["-c", "trap '' TERM; sleep 42001 & echo up; wait"], cwd: "/", env: { PATH: "/usr/bin:/bin" } });
    while (proc.stdout.text() !== "up\n") await new Promise((r) => setTimeout(r, 20));
    const t = Date.now();
    proc.stop("test", 300);
    await proc.finished;
    expect(Date.now() - t).toBeGreaterThanOrEqual(280);
    expect(proc.signal).toBe("SIGKILL");
    expect(proc.stopReason).toBe("test");
    // The background child (which ignores SIGTERM too) is gone with its group; a zombie waiting for its reaper counts as gone.
    const live = () => fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e)).filter((e) => {
      try {
        return fs.readFileSync(`/proc/${e}/cmdline`, "utf8") === "sleep\u000042001\u0000" && !/\) Z /.test(fs.readFileSync(`/proc/${e}/stat`, "utf8"));
      } catch {
        return false;
      }
    });
    for (let i = 0; i < 50 && live().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(live()).toEqual([]);
  });

  it("a command that cannot start is ASTRID_ERR_PROCESS_START_FAILED", async () => {
    const err = await ManagedProcess.start({ file: "/nonexistent/cmd", args: [], cwd: "/", env: {} }).catch((e: unknown) => e);
    expect(isAstridError(err) && err.code).toBe("ASTRID_ERR_PROCESS_START_FAILED");
  });
});
