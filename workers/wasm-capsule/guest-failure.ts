/**
 * How a host import fails in the shape jco's glue expects: a thrown `{ payload: <error-code variant> }` becomes the
 * guest's `err(payload)`. Shared by the astrid host packages (host-imports.ts and the packages beside it).
 */
import type { SyscallResult } from "../../protocol/capsule-messages";

/** The method jco's glue calls when the guest drops a resource the host made. */
export const DISPOSE: symbol = (Symbol as { dispose?: symbol }).dispose ?? Symbol.for("dispose");

/** The thrown form jco turns into `err(payload)`. */
export class Failure {
  constructor(readonly payload: { tag: string; val?: string }) {}
}

/** Throws the `error-code` case `tag` (with `val` for a case that carries one). */
export const fail = (tag: string, val?: string): never => {
  throw new Failure(val === undefined ? { tag } : { tag, val });
};

/** Maps a kernel refusal to a package's `error-code`, using `table` for codes the package has a case for. */
export function check(result: SyscallResult, table: Record<string, string>): unknown {
  if (result.ok) return result.value;
  const tag = table[result.code];
  return tag ? fail(tag) : fail("unknown", `${result.code}: ${result.message}`);
}

/** A refusal by the manifest or by the acting principal: `capability-denied` in every package. */
export const DENIED = { ASTRID_ERR_CAPABILITY_DENIED: "capability-denied", ASTRID_ERR_PERMISSION_DENIED: "capability-denied" };

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** `bytes` as the UTF-8 text the kernel carries (HTTP bodies, process stdin), or the case `invalid` thrown. */
export function utf8Text(bytes: Uint8Array, invalid: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    return fail(invalid);
  }
}
