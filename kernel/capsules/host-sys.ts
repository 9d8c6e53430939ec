/**
 * The `sys.*` host calls: capability introspection. `sys.capabilities` lists the calling capsule's own declared
 * `[capabilities]` (the names, not the entries within them); `sys.check_capability` answers whether the capsule
 * that published a message (named by the message's `source_id`) declared a capability. Only
 * `allow_prompt_injection` can be answered true by a check: it is a flag about a capsule, not a gate on a call. An
 * unknown source or any other capability is false (fail closed). Both are ungated and not audited: a capsule's
 * declared posture is metadata about it, and knowing it grants nothing. `sys.trigger_hook` is served by
 * hook-trigger.ts (audited there).
 */
import { AstridError } from "../../protocol/errors";
import type { CapsuleManifest } from "../../protocol/capsule-manifest";
import type { CapsuleRun } from "./capsule-run";
import type { HostCall, HostService } from "./host-call";
import type { HookTrigger } from "./hook-trigger";

/** The capabilities a check may answer true for. */
const CHECKABLE = new Set(["allow_prompt_injection"]);
/** Longest source id or capability name a check takes (a source id is a UUID). */
const MAX_NAME_CHARS = 128;

/** The `[capabilities]` names a manifest declares: entries that are a non-empty list or `true`. */
export function declaredCapabilities(manifest: CapsuleManifest): string[] {
  return Object.entries(manifest.capabilities)
    .filter(([, value]) => (Array.isArray(value) ? value.length > 0 : value === true))
    .map(([name]) => name)
    .sort();
}

/** SysService: capability introspection for capsules. */
export class SysService implements HostService {
  /** `runBySource`: the live run whose bus source id is the given one, if any; `hooks`: serves `sys.trigger_hook`. */
  constructor(
    private readonly runBySource: (sourceId: string) => CapsuleRun | undefined,
    private readonly hooks?: () => HookTrigger,
  ) {}

  async handle(call: HostCall, args: unknown[]): Promise<unknown> {
    switch (call.call) {
      case "sys.capabilities":
        return declaredCapabilities(call.run.record.manifest);
      case "sys.check_capability": {
        const [source, capability] = args;
        if (typeof source !== "string" || typeof capability !== "string" || source.length > MAX_NAME_CHARS || capability.length > MAX_NAME_CHARS) {
          throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `sys.check_capability: source id and capability must be strings of at most ${MAX_NAME_CHARS} characters`);
        }
        if (!CHECKABLE.has(capability)) return false;
        const run = this.runBySource(source);
        return run !== undefined && !run.ended && run.record.manifest.capabilities[capability as "allow_prompt_injection"] === true;
      }
      case "sys.trigger_hook":
        if (!this.hooks) throw new AstridError("ASTRID_ERR_NOT_IMPLEMENTED", "sys.trigger_hook: this kernel serves no hook fan-out");
        return this.hooks().trigger(call, args[0], call.seq);
      default:
        throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `unknown capsule call ${call.call}`);
    }
  }
}
