/** The package names (and their subpaths) a capsule may import the reference SDK's surface by. */
export const ASTRID_OS_SDK_SPECIFIERS = ["@astrid-os/sdk", "@unicity-astrid/sdk"] as const;
