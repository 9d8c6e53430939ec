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
  return winston.createLogger({ level: options.level, transports });
}

/** Flushes and closes the logger; resolves once every line is on disk (or after `timeoutMs`). */
export function closeLogger(logger: Logger, timeoutMs = 2000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    logger.on("finish", () => {
      clearTimeout(timer);
      // The file transport finishes its own stream a moment after the logger's finish event.
      setImmediate(resolve);
    });
    logger.end();
  });
}
