/**
 * `astrid logs [-f] [--capsule NAME] [--level L] [--since T] [-n N] [--json]`: the daemon's log — the JSON lines of
 * `$ASTRID_HOME/log/astrid.YYYY-MM-DD.log` (kernel/logger.ts) — read straight from the files, so it works with the
 * daemon stopped. Readable lines by default, the lines as they are with `--json`; `-f` follows the newest file and
 * moves on to the next day's when the logger rotates.
 */
import fs from "node:fs";
import path from "node:path";
import type { Argv, CommandModule } from "yargs";
import { resolveHome } from "../../kernel/home";
import { UsageError } from "./usage";

/** Severity order of the logger's levels: `--level warn` shows warn and error. */
const LEVELS = ["error", "warn", "info", "debug"] as const;
type Level = (typeof LEVELS)[number];

/** The daily files' names (kernel/logger.ts: `astrid.%DATE%.log`, DATE = YYYY-MM-DD); they sort by date. */
const LOG_FILE = /^astrid\.\d{4}-\d{2}-\d{2}\.log$/;
/** How often `-f` looks for new lines and a new day's file. */
const FOLLOW_POLL_MS = 200;
/** Lines shown without `-n` and `--since`. */
const DEFAULT_LINES = 100;

/** One parsed log line. */
interface Entry {
  level?: string;
  message?: string;
  timestamp?: string;
  [field: string]: unknown;
}

/** Which entries to show. */
export interface LogFilter {
  capsule?: string;
  level?: Level;
  /** Epoch ms: entries before it are skipped. */
  since?: number;
}

/** `--since`: an ISO date/time, or a duration back from now (`30s`, `10m`, `2h`, `1d`); epoch ms. */
export function parseSince(text: string, now = Date.now()): number {
  const relative = /^(\d+)\s*(s|m|h|d)$/.exec(text.trim());
  if (relative) return now - Number(relative[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[relative[2] as "s" | "m" | "h" | "d"];
  const at = Date.parse(text);
  if (Number.isNaN(at)) throw new UsageError(`--since ${JSON.stringify(text)} is neither a date/time (2026-01-31T12:00:00Z) nor a duration (30s, 10m, 2h, 1d)`);
  return at;
}

/** True when `entry` passes `filter`. A capsule's own lines carry `capsule`; the kernel's about it `capsule`, `capsule_id` or `name`. */
export function matches(entry: Entry, filter: LogFilter): boolean {
  if (filter.level !== undefined) {
    const rank = LEVELS.indexOf(entry.level as Level);
    if (rank === -1 || rank > LEVELS.indexOf(filter.level)) return false;
  }
  if (filter.capsule !== undefined && entry.capsule !== filter.capsule && entry.capsule_id !== filter.capsule && entry.name !== filter.capsule) return false;
  if (filter.since !== undefined) {
    const at = Date.parse(String(entry.timestamp));
    if (Number.isNaN(at) || at < filter.since) return false;
  }
  return true;
}

/** One entry for people: `2026-01-31 12:00:00.123 INFO  [capsule] message {other fields}`. */
export function formatEntry(entry: Entry): string {
  const { level = "?", message = "", timestamp = "", capsule, ...rest } = entry;
  const when = String(timestamp).replace("T", " ").replace(/Z$/, "");
  const tag = typeof capsule === "string" ? `[${capsule}] ` : "";
  const extra = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : "";
  return `${when} ${String(level).toUpperCase().padEnd(5)} ${tag}${String(message)}${extra}`;
}

/** The daily log files of `logDir`, oldest first. */
function logFiles(logDir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(logDir);
  } catch {
    return [];
  }
  return names.filter((n) => LOG_FILE.test(n)).sort().map((n) => path.join(logDir, n));
}

/** The entries of complete lines of `text` that pass `filter`, as output lines (`json`: the line itself). */
function render(lines: string[], filter: LogFilter, json: boolean): string[] {
  const shown: string[] = [];
  for (const line of lines) {
    if (line.trim() === "") continue;
    let entry: Entry;
    try {
      entry = JSON.parse(line) as Entry;
    } catch {
      continue; // a line cut by a crash mid-write
    }
    if (typeof entry !== "object" || entry === null || !matches(entry, filter)) continue;
    shown.push(json ? line : formatEntry(entry));
  }
  return shown;
}

/** Options of `astrid logs`. */
export interface LogsOptions extends LogFilter {
  json: boolean;
  follow: boolean;
  /** The last N matching lines (undefined: DEFAULT_LINES, or all with `since`). */
  lines?: number;
  write: (line: string) => void;
  /** Ends `-f` (tests; people press Ctrl-C). */
  signal?: AbortSignal;
}

/** Prints the matching entries of every daily file, then (with `follow`) new ones as they are written. */
export async function showLogs(logDir: string, options: LogsOptions): Promise<void> {
  const files = logFiles(logDir);
  const shown: string[] = [];
  let lastBytes = 0;
  for (const file of files) {
    const bytes = fs.readFileSync(file);
    // Only whole lines: a line being written is read by -f once it is complete.
    lastBytes = bytes.lastIndexOf(0x0a) + 1;
    shown.push(...render(bytes.subarray(0, lastBytes).toString("utf8").split("\n"), options, options.json));
  }
  const limit = options.lines ?? (options.since !== undefined ? Infinity : DEFAULT_LINES);
  for (const line of limit === Infinity ? shown : shown.slice(Math.max(0, shown.length - limit))) options.write(line);
  if (!options.follow) {
    if (files.length === 0 && !options.json) process.stderr.write(`No log files in ${logDir} yet.\n`);
    return;
  }
  // Follow from the end of the newest file (or from the first file that appears).
  let current = files[files.length - 1];
  let offset = lastBytes;
  const drain = () => {
    if (current === undefined) return;
    const read = readFrom(current, offset);
    offset += read.bytes;
    for (const line of render(read.text.split("\n"), options, options.json)) options.write(line);
  };
  while (!options.signal?.aborted) {
    await new Promise((resolve) => setTimeout(resolve, FOLLOW_POLL_MS));
    // The logger rotated (a new day) once a newer file exists: what the old one still got is read first.
    const newer = logFiles(logDir).find((f) => current === undefined || path.basename(f) > path.basename(current));
    drain();
    if (newer !== undefined) {
      current = newer;
      offset = 0;
      drain();
    }
  }
}

/** The bytes of `file` from `offset` on (none when it is gone or shorter, e.g. deleted by the 7-day retention). */
function readFrom(file: string, offset: number): { text: string; bytes: number } {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch {
    return { text: "", bytes: 0 };
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size <= offset) return { text: "", bytes: 0 };
    const buffer = Buffer.alloc(size - offset);
    const bytes = fs.readSync(fd, buffer, 0, buffer.length, offset);
    // A multi-byte character cut at the end is completed on the next read: only whole lines are decoded, and
    // every line ends with a newline byte, which never occurs inside a UTF-8 sequence.
    const last = buffer.lastIndexOf(0x0a, bytes - 1);
    const whole = last === -1 ? 0 : last + 1;
    return { text: buffer.subarray(0, whole).toString("utf8"), bytes: whole };
  } finally {
    fs.closeSync(fd);
  }
}

interface LogsArgs {
  json: boolean;
  follow: boolean;
  capsule?: string;
  level?: Level;
  since?: string;
  lines?: number;
}

/** `astrid logs`, registered in bin/astrid.ts. */
export const logsCommand: CommandModule<{ json: unknown }, LogsArgs> = {
  command: "logs",
  describe: "The daemon's log, readable and filtered; -f follows it across daily files (works with the daemon stopped)",
  builder: (y: Argv<{ json: unknown }>) =>
    y
      .option("follow", { alias: "f", type: "boolean", default: false, describe: "keep printing new lines (across the daily rotation) until Ctrl-C" })
      .option("capsule", { type: "string", describe: "only lines of (or about) this capsule" })
      .option("level", { choices: LEVELS, describe: "only this level and more severe (error > warn > info > debug)" })
      .option("since", { type: "string", describe: "only lines since a date/time (2026-01-31T12:00:00Z) or a duration back (30s, 10m, 2h, 1d)" })
      .option("lines", { alias: "n", type: "number", describe: `the last N matching lines (default ${DEFAULT_LINES}; all with --since; 0 with -f: only new ones)` })
      .example("$0 logs -f --capsule my-capsule", "follow one capsule's lines")
      .example("$0 logs --level warn --since 1h", "warnings and errors of the last hour") as unknown as Argv<LogsArgs>,
  handler: async (argv) => {
    if (argv.lines !== undefined && (!Number.isInteger(argv.lines) || argv.lines < 0)) throw new UsageError("-n must be a whole number ≥ 0");
    const since = argv.since !== undefined ? parseSince(argv.since) : undefined;
    await showLogs(resolveHome().logDir, {
      json: argv.json === true,
      follow: argv.follow,
      ...(argv.capsule !== undefined ? { capsule: argv.capsule } : {}),
      ...(argv.level !== undefined ? { level: argv.level } : {}),
      ...(since !== undefined ? { since } : {}),
      ...(argv.lines !== undefined ? { lines: argv.lines } : {}),
      write: (line) => process.stdout.write(`${line}\n`),
    });
  },
};
