/**
 * The `process.*` host calls.
 */
import { AstridError } from "../../protocol/errors";
import type { HostCall, HostContext, HostService } from "./host-call";

/** ProcessService: not built yet — every call is refused with ASTRID_ERR_NOT_IMPLEMENTED. */
export class ProcessService implements HostService {
  constructor(private readonly host: HostContext) {}

  async handle(call: HostCall, _args: unknown[]): Promise<unknown> {
    void this.host;
    throw new AstridError("ASTRID_ERR_NOT_IMPLEMENTED", `${call.call} is not available yet`);
  }
}
