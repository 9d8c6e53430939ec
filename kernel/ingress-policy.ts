/**
 * What socket clients may publish and what they receive (reference §4). In our design the main thread serves the
 * socket itself; the policy is declared by the bundled `astrid-capsule-cli` manifest: its `ipc_publish` is the
 * ingress allowlist (exact-segment matcher) and its `ipc_subscribe` the egress set (bus matcher, applied by the
 * socket server's bus subscription).
 */
import { memoTopicPredicate } from "../protocol/topic-cache";
import { exactSegmentMatches } from "../protocol/topic-match";
import type { CapsuleManifest } from "../protocol/capsule-manifest";

/** Name of the capsule that declares the socket policy; the daemon refuses to run without it. */
export const CLI_CAPSULE_NAME = "astrid-capsule-cli";

/** The socket's ingress and egress rules. */
export class SocketPolicy {
  /** True when a client may publish on `topic`. */
  readonly mayPublish = memoTopicPredicate((topic) => this.ingress.some((p) => exactSegmentMatches(p, topic)));

  constructor(
    /** Patterns a client may publish on (exact-segment). */
    readonly ingress: readonly string[],
    /** Patterns whose messages are forwarded to clients (bus matcher). */
    readonly egress: readonly string[],
  ) {}

  /** True when both allow and forward exactly the same patterns. */
  equals(other: SocketPolicy): boolean {
    const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((p, i) => p === b[i]);
    return same(this.ingress, other.ingress) && same(this.egress, other.egress);
  }

  /** The policy a CLI capsule manifest declares. */
  static fromManifest(manifest: CapsuleManifest): SocketPolicy {
    return new SocketPolicy(manifest.capabilities.ipc_publish, manifest.capabilities.ipc_subscribe);
  }
}
