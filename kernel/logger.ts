/**
 * The daemon's log: JSON lines in `$ASTRID_HOME/log/astrid.YYYY-MM-DD.log` (daily files, 7 kept), plus the same
 * lines on stderr (the convention of daemons run under systemd or `| tee`): readable, coloured only on a
 * terminal, or JSON with `--log-format json`; none with `--quiet` (what the CLI passes when it spawns the daemon).
 */
import path from "node:path";
import winston from "winston";
import DailyRotateFile from "winston-daily-rotate-file";

/** The logger type every kernel module takes. */
export type Logger = winston.Logger;

/** How to log. */
export interface LoggerOptions {
  logDir: string;
  level: "debug" | "info";
  /** Also print the lines to stderr. */
  console: boolean;
  /** How stderr lines look: readable (the default) or one JSON object a line. */
  format?: "pretty" | "json";
  /** Colour the level of readable lines (only when stderr is a terminal). */
  color?: boolean;
}

/** ANSI colours of the levels on a terminal. */
const LEVEL_COLOURS: Record<string, string> = { error: "\x1b[31m", warn: "\x1b[33m", info: "\x1b[36m", debug: "\x1b[90m" };

/**
 * The logger's clock, shifted by tests only (`shiftLogClockForTest`, reached through the fault seam in
 * kernel/test-faults.ts) so that crossing midnight — a new daily file, the 7 kept — is tested without waiting days.
 */
let clockOffsetMs = 0;
const logNow = () => new Date(Date.now() + clockOffsetMs);

/**
 * Tests only: moves the logger's clock (line timestamps and the daily file's date) `offsetMs` from the real one.
 * The rotation library reads the date through its own copy of moment, whose `now` hook is the one to move.
 */
export function shiftLogClockForTest(offsetMs: number): void {
  clockOffsetMs = offsetMs;
  const rotator = path.dirname(require.resolve("file-stream-rotator"));
  const moment = require(require.resolve("moment", { paths: [rotator] })) as { now: () => number };
  moment.now = () => Date.now() + clockOffsetMs;
}

/** Creates the daemon logger. */
export function createLogger(options: LoggerOptions): Logger {
  const transports: winston.transport[] = [
    new DailyRotateFile({
      dirname: options.logDir,
      filename: "astrid.%DATE%.log",
      datePattern: "YYYY-MM-DD",
      maxFiles: 7,
      auditFile: `${options.logDir}/.astrid-log-rotation.json`,
      format: winston.format.combine(winston.format.timestamp({ format: () => logNow().toISOString() }), winston.format.errors({ stack: true }), winston.format.json()),
    }),
  ];
  if (options.console) {
    const pretty = winston.format.combine(
      winston.format.timestamp({ format: "HH:mm:ss.SSS" }),
      winston.format.printf(({ timestamp, level, message, ...meta }) => {
        const extra = Object.keys(meta).length ? ` ${JSON.stringify(meta)}` : "";
        const name = level.toUpperCase().padEnd(5);
        const shown = options.color && LEVEL_COLOURS[level] ? `${LEVEL_COLOURS[level]}${name}\x1b[0m` : name;
        return `${String(timestamp)} ${shown} ${String(message)}${extra}`;
      }),
    );
    const json = winston.format.combine(winston.format.timestamp({ format: () => logNow().toISOString() }), winston.format.errors({ stack: true }), winston.format.json());
    transports.push(
      new winston.transports.Console({
        stderrLevels: ["error", "warn", "info", "debug"],
        format: options.format === "json" ? json : pretty,
      }),
    );
  }
  // A full disk (ENOSPC) or a log directory gone read-only must not take the daemon down: file-stream-rotator
  // re-emits its stream's errors, and an unheard 'error' event is fatal. The daemon keeps running; the file log
  // stops (count on it again after a restart), and stderr says so once.
  let told = false;
  const fileFailed = (err: Error) => {
    if (told) return;
    told = true;
    process.stderr.write(`astrid-daemon: cannot write the log file in ${options.logDir} (${(err as NodeJS.ErrnoException).code ?? err.message}); logging to it has stopped, the daemon keeps running\n`);
  };
  for (const t of transports) {
    if (t instanceof DailyRotateFile) {
      t.on("error", fileFailed);
      (t as unknown as { logStream?: NodeJS.EventEmitter }).logStream?.on("error", fileFailed);
    }
  }
  const logger = winston.createLogger({ level: options.level, transports });
  // A line logged during teardown must never take the daemon down ("write after end").
  logger.on("error", () => {});
  return logger;
}

/** Flushes and closes the logger; resolves once every line is on disk (or after `timeoutMs`). */
export async function closeLogger(logger: Logger, timeoutMs = 2000): Promise<void> {
  const within = (work: (done: () => void) => void) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      work(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  const files = logger.transports.filter((t): t is DailyRotateFile => t instanceof DailyRotateFile);
  await within((done) => {
    logger.once("finish", done);
    logger.end();
  });
  // The rotating transport acknowledges lines before its file stream has written them; close() ends that
  // stream and emits "finish" only once the bytes are in the file.
  await Promise.all(
    files.map((t) =>
      within((done) => {
        t.once("finish", done);
        t.close?.();
      }),
    ),
  );
}
