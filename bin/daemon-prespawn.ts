/**
 * Imported first by `astrid-daemon` for its effect: the workers of kernel/prespawn.ts (the capsule loader and spare
 * capsule workers) start before the kernel's modules load. Only for a daemon that will boot: not for --help,
 * --version or --print-config.
 */
import { LOADER_WORKER_OPTIONS, prespawn, prespawnCapsuleSpares } from "../kernel/prespawn";

/** Spare capsule workers started at boot: the bundled capsules with code (the assistant and the model agent). */
const BOOT_CAPSULE_SPARES = 2;

if (!process.argv.slice(2).some((a) => /^(-h|--help|-V|--version|--print-config)$/.test(a))) {
  prespawn("capsule-loader", LOADER_WORKER_OPTIONS);
  prespawnCapsuleSpares(BOOT_CAPSULE_SPARES, process.env);
}
