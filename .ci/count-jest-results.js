// Prints "<passed> <failed>" for a `jest --json` result file (.ci/run reads it for its closing line).
// A suite can fail while every test in it passed (an afterAll or beforeAll hook threw, or the file did not even
// load): jest then marks the suite "failed" with the error in its `message`, and numFailedTests misses it. Each
// such suite counts as one failure, also when some of its tests failed too (the hook's error is a separate one).
"use strict";
const results = require(require("node:path").resolve(process.argv[2]));
const suiteErrors = results.testResults.filter((suite) => {
  if (suite.status !== "failed") return false;
  const failedTests = suite.assertionResults.filter((test) => test.status === "failed").length;
  const message = suite.message ?? suite.failureMessage ?? "";
  return failedTests === 0 || message.includes("Test suite failed to run");
}).length;
console.log(results.numPassedTests, results.numFailedTests + suiteErrors);
