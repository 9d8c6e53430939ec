/**
 * How `astrid chat` shows a capsule author's reloads: `astrid.v1.capsule.reloaded` and
 * `astrid.v1.capsule.reload_failed`, one line each on stderr (so they never mix with replies on stdout).
 */
import { CAPSULE_RELOADED_TOPIC, CAPSULE_RELOAD_FAILED_TOPIC } from "../../protocol/topics";

/** The line for a reload event, or undefined when `topic` is not one. */
export function describeReloadEvent(topic: string, payload: Record<string, unknown>): string | undefined {
  if (topic === CAPSULE_RELOADED_TOPIC) {
    return `astrid: reloaded ${String(payload.name)} ${String(payload.old_version)} → ${String(payload.new_version)} in ${String(payload.ms)} ms`;
  }
  if (topic === CAPSULE_RELOAD_FAILED_TOPIC) {
    const where = typeof payload.file === "string" ? ` (${payload.file}${typeof payload.line === "number" ? `:${payload.line}` : ""})` : "";
    // The message may span lines (a syntax error's source line and caret): they are kept, indented.
    const message = String(payload.message ?? "").replace(/\n/g, "\n  ");
    return `astrid: reload of ${String(payload.name)} failed${where}: ${message}`;
  }
  return undefined;
}
