/** What the benchmark scripts read off and do to the processes they start (Linux /proc). */
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import { sleep } from "./bench-options";

/** Resident memory of `pid` in bytes (0 once it is gone). */
export function rssBytes(pid: number): number {
  try {
    const line = fs.readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"));
    return line ? Number(line.replace(/\D+/g, "")) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU time `pid` has used (user + system), in seconds (clock ticks of USER_HZ = 100). */
export function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * Waits (at most `timeoutMs`) until `pid` used no CPU for two polls in a row, so one measurement's tail (deferred
 * audit work, a boot) never spills into the next.
 */
export async function settle(pid: number, { timeoutMs = 10_000, pollMs = 100 } = {}): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = cpuSeconds(pid);
  for (let quiet = 0; quiet < 2 && Date.now() < deadline;) {
    await sleep(pollMs);
    const now = cpuSeconds(pid);
    quiet = now === last ? quiet + 1 : 0;
    last = now;
  }
}

/** SIGTERM, then SIGKILL if the child has not exited within `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}
