/**
 * One management request from the CLI to the daemon of a home: the check, the connection, the coded error and the
 * close that every command which asks the daemon something shares.
 */
import { AstridError } from "../../protocol/errors";
import type { DaemonClient, KernelReply } from "../../protocol/client";
import type { KernelMethod } from "../../protocol/kernel-request";
import type { AstridHome } from "../../kernel/home";
import { connect, daemonState } from "./daemon-control";

/** How to send one request. */
export interface DaemonRequestOptions {
  /** The topic suffix after `astrid.v1.request.` (the reference CLI's, e.g. `status`). */
  topicSuffix: string;
  /** Deadline for the reply (the client's default is 10 s). */
  timeoutMs?: number;
  /**
   * The caller has just seen the daemon live (`daemonState`), because its own answer when none runs is not an
   * error: skip probing the socket a second time.
   */
  knownLive?: boolean;
  /**
   * The request makes the daemon close every connection (Shutdown): after a good reply, wait for that close
   * instead of closing first.
   */
  daemonCloses?: boolean;
  /** Called once connected, before the request is sent (e.g. to answer questions the request makes capsules ask); returns its cleanup. */
  onConnected?: (client: DaemonClient) => () => void;
}

/** A reply other than `Error`. */
export type DaemonAnswer = Exclude<KernelReply, { status: "Error" }>;

/**
 * Sends `method` to the live daemon of `home` and resolves with its reply. Rejects with ASTRID_ERR_DAEMON_NOT_RUNNING
 * when none is live, with the daemon's own coded error when it answers `Error`, and with the connection's error
 * when it cannot connect or gets no reply; the connection is closed in every case.
 */
export async function daemonRequest(
  home: AstridHome,
  method: KernelMethod,
  params: Record<string, unknown> | undefined,
  options: DaemonRequestOptions,
): Promise<DaemonAnswer> {
  if (!options.knownLive && (await daemonState(home)) !== "live") {
    throw new AstridError("ASTRID_ERR_DAEMON_NOT_RUNNING", "No Astrid daemon is running; start one with `astrid start`.");
  }
  const client = await connect(home);
  let closedByDaemon = false;
  const stop = options.onConnected?.(client);
  try {
    const reply = await client.request(method, params, { topicSuffix: options.topicSuffix, timeoutMs: options.timeoutMs });
    // A reply without a code comes from a daemon older than the error registry.
    if (reply.status === "Error") throw new AstridError(reply.code ?? "ASTRID_ERR_INTERNAL", reply.data);
    if (options.daemonCloses) {
      await client.waitClosed();
      closedByDaemon = true;
    }
    return reply;
  } finally {
    stop?.();
    if (!closedByDaemon) await client.close();
  }
}
