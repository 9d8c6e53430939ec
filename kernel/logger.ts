/**
 * The daemon's log: JSON lines in `$ASTRID_HOME/log/astrid.YYYY-MM-DD.log` (daily files, 7 kept), plus readable
 * lines on stderr when a person started the daemon in a terminal. Spawned by the CLI (stdio ignored) the daemon
 * writes nothing to stdout or stderr.
 */
import winston from "winston";
import DailyRotateFile from "winston-daily-rotate-file";

/** The logger type every kernel module takes. */
export type Logger = winston.Logger;

/** How to log. */
export interface LoggerOptions {
  logDir: string;
  level: "debug" | "info";
  /** Also print readable lines to stderr. */
  console: boolean;
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
      format: winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: true }), winston.format.json()),
    }),
  ];
  if (options.console) {
    transports.push(
      new winston.transports.Console({
        stderrLevels: ["error", "warn", "info", "debug"],
        format: winston.format.combine(
          winston.format.timestamp({ format: "HH:mm:ss.SSS" }),
          winston.format.printf(({ timestamp, level, message, ...meta }) => {
            const extra = Object.keys(meta).length ? ` ${JSON.stringify(meta)}` : "";
            return `${String(timestamp)} ${level.toUpperCase().padEnd(5)} ${String(message)}${extra}`;
          }),
        ),
      }),
    );
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
