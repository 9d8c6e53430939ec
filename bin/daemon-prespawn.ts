/**
 * Imported first by `astrid-daemon` for its effect: the workers of kernel/prespawn.ts start before the kernel's
 * modules load. Only for a daemon that will boot: not for --help, --version or --print-config.
 */
import { LOADER_WORKER_OPTIONS, prespawn } from "../kernel/prespawn";

if (!process.argv.slice(2).some((a) => /^(-h|--help|-V|--version|--print-config)$/.test(a))) {
  prespawn("capsule-loader", LOADER_WORKER_OPTIONS);
}
