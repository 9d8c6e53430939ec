/**
 * One admin request (reference §5.4) from the CLI to the daemon of a home: the liveness check, the connection, the
 * coded error and the close that every `astrid agent|group|caps|quota` command shares.
 */
import { adminRequest, type AdminMethod, type AdminReply } from "../../protocol/admin-request";
import { AstridError } from "../../protocol/errors";
import type { AstridHome } from "../../kernel/home";
import { connect, daemonState } from "./daemon-control";

/** A reply other than `Error`. */
export type AdminAnswer = Exclude<AdminReply, { status: "Error" }>;

/**
 * Sends `method` to the live daemon of `home` and resolves with its reply. Rejects with ASTRID_ERR_DAEMON_NOT_RUNNING
 * when none is live, and with the daemon's own coded error when it answers `Error`; the connection is closed in
 * every case.
 */
export async function adminCall(home: AstridHome, method: AdminMethod, params?: Record<string, unknown>): Promise<AdminAnswer> {
  if ((await daemonState(home)) !== "live") {
    throw new AstridError("ASTRID_ERR_DAEMON_NOT_RUNNING", "No Astrid daemon is running; principals are managed through it: start one with `astrid start`.");
  }
  const client = await connect(home);
  try {
    const reply = await adminRequest(client, method, params);
    if (reply.status === "Error") throw new AstridError(reply.code, reply.data);
    return reply;
  } finally {
    await client.close();
  }
}
