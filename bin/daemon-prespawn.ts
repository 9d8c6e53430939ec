/**
 * Imported first by `astrid-daemon` for its effect: the worker of kernel/prespawn.ts (the capsule loader) starts
 * before the kernel's modules load. Only for a daemon that will boot: not for --help,
 * --version or --print-config.
 */
import { prespawn } from "../kernel/prespawn";

// Spare capsule workers are not started here: measured, the main thread's module loading then ran slower by more
// than the capsules' start gained on 2 cores (the supervisor keeps one spare for later starts and reloads).

if (!process.argv.slice(2).some((a) => /^(-h|--help|-V|--version|--print-config)$/.test(a))) {
  prespawn("capsule-loader");
}
