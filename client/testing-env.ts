/** The variable `astrid capsule test` names the capsule under test in (the test daemon's ASTRID_HOME is set too). */
export const TEST_CAPSULE_ENV = "ASTRID_TEST_CAPSULE";
