/**
 * Hardened JavaScript for a capsule worker: this module must be the first thing the worker imports, so that every
 * intrinsic is frozen before any other code (ours or the capsule's) runs. Errors keep their stacks (the capsule's
 * log needs them); an uncaught error ends the worker with an `error` event the kernel sees, as without SES.
 */
import "ses";

lockdown({
  errorTaming: "unsafe",
  overrideTaming: "severe",
  consoleTaming: "unsafe",
  errorTrapping: "none",
  unhandledRejectionTrapping: "none",
  stackFiltering: "verbose",
});
