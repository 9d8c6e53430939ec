/**
 * `astrid --version` (or `-V`) alone, answered before anything else is loaded: imported first by bin/astrid.ts for
 * its side effect, so scripts probing the install pay for a bare Node start and one tiny module, not for yargs and
 * the client (measured by bench/cli-startup).
 */
import fs from "node:fs";
import { DAEMON_VERSION } from "../../protocol/version";

const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === "--version" || args[0] === "-V")) {
  // Written synchronously: the process exits right after.
  fs.writeSync(1, `${DAEMON_VERSION}\n`);
  process.exit(0);
}
