/** How every capsule worker locks down (and the build, when it makes SES's code cache with the same work). */
export const LOCKDOWN_OPTIONS = {
  errorTaming: "unsafe",
  overrideTaming: "severe",
  consoleTaming: "unsafe",
  errorTrapping: "none",
  unhandledRejectionTrapping: "none",
  stackFiltering: "verbose",
} as const;
