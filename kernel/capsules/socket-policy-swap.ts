/**
 * After a reload pass the socket takes the policy of the CLI capsule as it now reads (the reference reads it once
 * at boot). While that capsule is missing or its manifest invalid, the socket keeps the last valid policy rather
 * than lock every client out; the daemon would not boot that way, so it is logged as an error.
 */
import type { AuditLog } from "../audit-log";
import { CLI_CAPSULE_NAME, SocketPolicy } from "../ingress-policy";
import type { Logger } from "../logger";
import type { SocketServer } from "../socket-server";
import type { CapsuleRegistry } from "./registry";

/** Keeps the socket's ingress/egress policy in step with the CLI capsule. */
export class SocketPolicySwap {
  /** Why the CLI capsule cannot give the socket a policy now (logged once per distinct reason). */
  private problem: string | undefined;

  constructor(
    private readonly server: Pick<SocketServer, "policyInForce" | "setPolicy">,
    private readonly logger: Logger,
    private readonly audit: AuditLog,
  ) {}

  /** Applies the CLI capsule's current policy, if it is usable and differs from the one in force. */
  apply(registry: CapsuleRegistry): void {
    const cli = registry.get(CLI_CAPSULE_NAME);
    if (cli?.state !== "ready") {
      const why = cli?.lastError ?? "it was removed";
      if (why !== this.problem) {
        this.problem = why;
        this.logger.error("socket policy capsule unusable; clients keep the last valid policy, and the daemon will not start again until it is fixed", {
          capsule: CLI_CAPSULE_NAME, error: why,
        });
      }
      return;
    }
    this.problem = undefined;
    const next = SocketPolicy.fromManifest(cli.manifest);
    if (next.equals(this.server.policyInForce)) return;
    this.server.setPolicy(next);
    this.logger.info("socket policy reloaded", { capsule: CLI_CAPSULE_NAME, dir: cli.dir, publish: next.ingress, forward: next.egress });
    this.audit.capsule("reload", CLI_CAPSULE_NAME, { socket_policy: { publish: next.ingress, forward: next.egress } });
  }
}
