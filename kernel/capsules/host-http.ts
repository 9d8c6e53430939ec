/**
 * The `http.*` host calls.
 */
import { AstridError } from "../../protocol/errors";
import type { HostCall, HostContext, HostService } from "./host-call";

/** HttpService: not built yet — every call is refused with ASTRID_ERR_NOT_IMPLEMENTED. */
export class HttpService implements HostService {
  constructor(private readonly host: HostContext) {}

  async handle(call: HostCall, _args: unknown[]): Promise<unknown> {
    void this.host;
    throw new AstridError("ASTRID_ERR_NOT_IMPLEMENTED", `${call.call} is not available yet`);
  }
}
