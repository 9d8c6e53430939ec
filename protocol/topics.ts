/** Every topic string the kernel publishes or routes on, in one place (reference §2.6, §2.7, §5). */

/** Prefix of management requests; the rest of the topic is the client's free choice. */
export const REQUEST_TOPIC_PREFIX = "astrid.v1.request.";
/** Prefix of management responses: the request topic with `request.` replaced by `response.`. */
export const RESPONSE_TOPIC_PREFIX = "astrid.v1.response.";
/** Bus pattern the management router subscribes to. */
export const REQUEST_TOPIC_PATTERN = "astrid.v1.request.*";

/** Published by the socket layer after a successful handshake. */
export const CLIENT_CONNECTED_TOPIC = "client.v1.connected";
/** Published by the socket layer when an authenticated stream closes. */
export const CLIENT_DISCONNECT_TOPIC = "client.v1.disconnect";
/** Bus pattern the connection tracker watches. */
export const CLIENT_TOPIC_PATTERN = "client.v1.*";

/** Published at the end of every capsule load pass. */
export const CAPSULES_LOADED_TOPIC = "astrid.v1.capsules_loaded";
/** Published for each failed capsule. */
export const HEALTH_FAILED_TOPIC = "astrid.v1.health.failed";
/** Published when a capsule loads with `[env]` values nobody provided yet. */
export const ONBOARDING_REQUIRED_TOPIC = "astrid.v1.onboarding.required";
/** Tool calls: `tool.v1.execute.<name>` carries the request, `….result` the outcome. */
export const TOOL_EXECUTE_PREFIX = "tool.v1.execute.";
/** Lifecycle event seen by interceptors at shutdown. */
export const KERNEL_SHUTDOWN_TOPIC = "astrid.v1.lifecycle.kernel_shutdown";
/** Where the daemon tells one client that a frame it sent was refused (our addition; reference drops silently). */
export const CLIENT_ERROR_TOPIC = "astrid.v1.error";

/** Response topic for a request topic (reference §5.1). */
export function responseTopicFor(requestTopic: string): string {
  return RESPONSE_TOPIC_PREFIX + requestTopic.slice(REQUEST_TOPIC_PREFIX.length);
}
