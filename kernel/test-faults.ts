/**
 * Fault injection from outside the process, for tests only (`ASTRID_TEST_FAULTS=1`). Worker threads cannot be
 * killed from outside the process, and the logger's clock cannot be moved from there either, so a test writes one
 * command into `run/test-fault` and sends the daemon SIGUSR2:
 *
 * - `storage-crash`: the storage worker exits in the middle of a batch (piscina starts a fresh one);
 * - `capsule-crash <name>`: the capsule's worker thread is terminated, as a crash would end it (supervised restart);
 * - `clock <offset-ms>`: the logger's clock runs `offset-ms` from the real one (daily log files, retention).
 *
 * The outcome goes to the log (`test fault injected` / `test fault refused`). Without the setting, SIGUSR2 keeps
 * Node's default (the process ends), as in any daemon that does not handle it.
 */
import fs from "node:fs/promises";
import path from "node:path";
import type { CapsuleSupervisor } from "./capsules/supervisor";
import { shiftLogClockForTest, type Logger } from "./logger";
import type { StorageClient } from "./storage-client";

/** The command file under the home's run/ directory. */
export const TEST_FAULT_FILE = "test-fault";

/** What a fault can reach. */
export interface FaultTargets {
  runDir: string;
  logger: Logger;
  storage: StorageClient;
  supervisor: Pick<CapsuleSupervisor, "crashForTest">;
}

/** Listens for SIGUSR2 for the rest of the process's life. */
export function installTestFaults(targets: FaultTargets): void {
  const onSignal = async () => {
    let command: string;
    try {
      command = (await fs.readFile(path.join(targets.runDir, TEST_FAULT_FILE), "utf8")).trim();
    } catch (err) {
      targets.logger.warn("test fault refused", { error: (err as Error).message });
      return;
    }
    const [what, arg] = command.split(/\s+/, 2);
    if (what === "storage-crash") {
      targets.storage.crashForTest().catch((err: Error) => targets.logger.info("test fault injected", { fault: what, outcome: err.message }));
    } else if (what === "capsule-crash" && arg !== undefined && targets.supervisor.crashForTest(arg)) {
      targets.logger.info("test fault injected", { fault: what, capsule: arg });
    } else if (what === "clock" && arg !== undefined && Number.isSafeInteger(Number(arg))) {
      shiftLogClockForTest(Number(arg));
      targets.logger.info("test fault injected", { fault: what, offset_ms: Number(arg) });
    } else {
      targets.logger.warn("test fault refused", { command });
    }
  };
  process.on("SIGUSR2", () => void onSignal());
}
