/**
 * Limits on what a capsule may send, shared by the kernel and the capsule host. Kept apart from the message schemas
 * so a capsule worker loads no schema library: every worker pays for what it imports at spawn.
 */

/** Largest payload a capsule may publish (reference §6.8). */
export const MAX_CAPSULE_PAYLOAD_BYTES = 5 * 1024 * 1024;
/** Most payload bytes one capsule may publish in a one-second window (reference §6.8 `max_ipc_throughput_bytes`). */
export const MAX_CAPSULE_PUBLISH_BYTES_PER_SEC = 10 * 1024 * 1024;
/** Largest string a capsule may put in a log line or an error message; longer ones are malformed. */
export const MAX_CAPSULE_TEXT_CHARS = 64 * 1024;
/** Events a capsule may have delivered but not yet handled before new ones are dropped (and counted). */
export const CAPSULE_QUEUE_LIMIT = 256;
/** How often a capsule worker reports its memory outside the V8 heap (ArrayBuffers, external memory). */
export const CAPSULE_STATS_INTERVAL_MS = 250;
