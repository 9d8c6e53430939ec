/**
 * What a WebAssembly capsule's `astrid-hook-trigger` answered, as the kernel's interceptor decision.
 */
import { MAX_CAPSULE_TEXT_CHARS } from "../../protocol/capsule-limits";
import type { InterceptResult } from "../../protocol/capsule-messages";

/** The reference's mapping of a hook's `capsule-result`: continue / final / deny|abort / anything else → continue. */
export function mapResult(out: { action: string; data?: string }): InterceptResult {
  const data = out.data === undefined ? undefined : parseData(out.data);
  switch (out.action) {
    case "final":
      return data === undefined ? { action: "final" } : { action: "final", data };
    case "deny":
    case "abort":
      return { action: "deny", reason: (out.data ?? "denied by interceptor").slice(0, MAX_CAPSULE_TEXT_CHARS) };
    default:
      return data === undefined ? { action: "continue" } : { action: "continue", data };
  }
}

/** A hook's `data` is JSON text; text that is not JSON passes on as a string. */
function parseData(text: string): unknown {
  if (text === "" || text === "null") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
