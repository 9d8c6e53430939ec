/** Every topic string the kernel publishes or routes on, in one place (reference §2.6, §2.7, §5). */

/** Prefix of management requests; the rest of the topic is the client's free choice. */
export const REQUEST_TOPIC_PREFIX = "astrid.v1.request.";
/** Prefix of management responses: the request topic with `request.` replaced by `response.`. */
export const RESPONSE_TOPIC_PREFIX = "astrid.v1.response.";
/** Bus pattern the management router subscribes to. */
export const REQUEST_TOPIC_PATTERN = "astrid.v1.request.*";

/** Prefix of admin requests (reference §5.4): any topic under it except the responses'. */
export const ADMIN_TOPIC_PREFIX = "astrid.v1.admin.";
/** Prefix of admin responses: the request topic with `admin.` replaced by `admin.response.`. */
export const ADMIN_RESPONSE_TOPIC_PREFIX = "astrid.v1.admin.response.";
/** Bus pattern the admin router subscribes to (it skips the responses' own topics). */
export const ADMIN_TOPIC_PATTERN = "astrid.v1.admin.*";

/** Response topic for an admin request topic (reference §5.4). */
export function adminResponseTopicFor(requestTopic: string): string {
  return ADMIN_RESPONSE_TOPIC_PREFIX + requestTopic.slice(ADMIN_TOPIC_PREFIX.length);
}

/** A client joins a session explicitly (`{session_id}`); answered on SESSION_JOINED_TOPIC or an error frame. */
export const SESSION_JOIN_TOPIC = "client.v1.session.join";
/** A client leaves a session (`{session_id}`); it no longer receives that session's events. */
export const SESSION_LEAVE_TOPIC = "client.v1.session.leave";
/** The daemon's answer to a join, to that client only: `{session_id, owner}`. */
export const SESSION_JOINED_TOPIC = "client.v1.session.joined";

/** Published by the socket layer after a successful handshake. */
export const CLIENT_CONNECTED_TOPIC = "client.v1.connected";
/** Published by the socket layer when an authenticated stream closes. */
export const CLIENT_DISCONNECT_TOPIC = "client.v1.disconnect";
/** Bus pattern the connection tracker watches. */
export const CLIENT_TOPIC_PATTERN = "client.v1.*";

/** Published at the end of every capsule load pass. */
export const CAPSULES_LOADED_TOPIC = "astrid.v1.capsules_loaded";
/** A capsule reloaded because its files changed and is ready again: `{name, old_version, new_version, ms}`. */
export const CAPSULE_RELOADED_TOPIC = "astrid.v1.capsule.reloaded";
/** A capsule's changed files did not load: `{name, file, line, message}` (`file`/`line` null when unknown). */
export const CAPSULE_RELOAD_FAILED_TOPIC = "astrid.v1.capsule.reload_failed";
/** Published for each failed capsule. */
export const HEALTH_FAILED_TOPIC = "astrid.v1.health.failed";
/** Published when a capsule loads with `[env]` values nobody provided yet. */
export const ONBOARDING_REQUIRED_TOPIC = "astrid.v1.onboarding.required";
/** An MCP server's tool list changed (it said so, or it restarted with other tools): `{server, owner, tools}`. */
export const MCP_TOOLS_CHANGED_TOPIC = "astrid.v1.mcp.tools_changed";
/** Tool calls: `tool.v1.execute.<name>` carries the request, `….result` the outcome. */
export const TOOL_EXECUTE_PREFIX = "tool.v1.execute.";
/** Lifecycle event seen by interceptors at shutdown. */
export const KERNEL_SHUTDOWN_TOPIC = "astrid.v1.lifecycle.kernel_shutdown";
/** Where the daemon tells one client that a frame it sent was refused (our addition; reference drops silently). */
export const CLIENT_ERROR_TOPIC = "astrid.v1.error";

/** A capsule asks the people in a session to approve an action (`approval_required`). */
export const APPROVAL_TOPIC = "astrid.v1.approval";
/** A person's decision: `astrid.v1.approval.response.<request_id>` (`approval_response`). */
export const APPROVAL_RESPONSE_PREFIX = "astrid.v1.approval.response.";
/** A capsule's install/upgrade hook asks the operator for a value (`elicit_request`). */
export const ELICIT_TOPIC = "astrid.v1.elicit";
/** The operator's answer: `astrid.v1.elicit.response.<request_id>` (`elicit_response`; may carry a secret). */
export const ELICIT_RESPONSE_PREFIX = "astrid.v1.elicit.response.";

/**
 * True for a person's answer to an approval or elicitation. Answers go to the kernel only: never to capsules (a
 * capsule could approve its own request, or read a secret typed for another) nor back out to other clients.
 */
export function isAnswerTopic(topic: string): boolean {
  return topic.startsWith(APPROVAL_RESPONSE_PREFIX) || topic.startsWith(ELICIT_RESPONSE_PREFIX);
}

/** Response topic for a request topic (reference §5.1). */
export function responseTopicFor(requestTopic: string): string {
  return RESPONSE_TOPIC_PREFIX + requestTopic.slice(REQUEST_TOPIC_PREFIX.length);
}
