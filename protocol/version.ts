/** The wire protocol version this daemon speaks (reference §3.2). */
export const PROTOCOL_VERSION = 1;

/** The daemon's own version; a unit test keeps it equal to package.json's. */
export const DAEMON_VERSION = "0.1.0";
