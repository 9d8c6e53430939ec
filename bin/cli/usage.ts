/**
 * Usage errors of `astrid`: an unknown command, option or choice, a missing action or argument. Such an error runs
 * nothing: it is thrown out of yargs' parse before any handler starts (a `fail` callback that only reports would
 * let yargs run the handler anyway), printed with the help of the (sub)command it concerns, and exits 2.
 */
import { AstridError } from "../../protocol/errors";

/** The process exit status of a usage error. */
export const USAGE_EXIT_CODE = 2;

/** A usage error: reported like any error, with exit status 2 and, when known, the (sub)command's help. */
export class UsageError extends AstridError {
  /** The process exit status `astrid` uses for it. */
  readonly exitCode = USAGE_EXIT_CODE;

  constructor(
    message: string,
    /** The help text of the (sub)command the mistake concerns, printed before the error. */
    readonly help?: string,
  ) {
    super("ASTRID_ERR_INVALID_ARGUMENT", message);
  }
}

/** What yargs hands a `fail` callback as its third argument (its usage instance). */
interface YargsUsage {
  showHelp(print: (text: string) => void): void;
}

/**
 * The `fail` callback of every `astrid` command. A parse error (yargs' own YError) becomes a UsageError carrying
 * the help of the command being parsed; an error a handler threw or rejected with is passed on unchanged. Either
 * way it is thrown: yargs then never calls the command's handler, and `parseAsync` rejects (or throws) with it.
 */
export function failOnUsage(message: string | null | undefined, err: Error | undefined, usage: YargsUsage): never {
  if (err !== undefined && err !== null && err.name !== "YError") throw err;
  let help: string | undefined;
  try {
    usage.showHelp((text) => (help = text));
  } catch {
    // No help to show: the error alone still says what was wrong.
  }
  throw new UsageError(message ?? err?.message ?? "invalid usage", help);
}
