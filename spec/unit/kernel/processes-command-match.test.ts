/**
 * The host_process matcher: an entry covers a command equal to it or followed by a space; for argv the entry's
 * words must be argv's first elements, so an argument carrying spaces (or a shell line in argv[0]) matches nothing.
 */
import { argvCovered, commandLine, hostProcessCovers } from "../../../kernel/processes/command-match";
import { hostProcessCovers as mcpMatcher } from "../../../kernel/capsules/host-mcp";

describe("hostProcessCovers (a command as one string)", () => {
  it("equal, or followed by a space; never a longer word", () => {
    expect(hostProcessCovers(["git"], "git")).toBe(true);
    expect(hostProcessCovers(["git"], "git status")).toBe(true);
    expect(hostProcessCovers(["git status"], "git status -s")).toBe(true);
    expect(hostProcessCovers(["git"], "gitx")).toBe(false);
    expect(hostProcessCovers(["git status"], "git")).toBe(false);
    expect(hostProcessCovers(["ls"], "ls; rm -rf /")).toBe(false);
    expect(hostProcessCovers([""], "anything")).toBe(false);
    expect(hostProcessCovers([], "git")).toBe(false);
  });

  it("is the matcher MCP servers are checked with", () => {
    expect(mcpMatcher).toBe(hostProcessCovers);
  });
});

describe("argvCovered", () => {
  it("agrees with the string rule for arguments without spaces", () => {
    const entries = ["echo", "git status", "sh -c"];
    for (const argv of [["echo"], ["echo", "a", "b"], ["git", "status", "-s"], ["git", "log"], ["gitx"], ["sh", "-c", "x"], ["sh"], ["echox", "a"]]) {
      expect([argv, argvCovered(entries, argv)]).toEqual([argv, hostProcessCovers(entries, argv.join(" "))]);
    }
  });

  it("refuses what the joined string would let through", () => {
    expect(argvCovered(["sh -c"], ["sh -c", "rm -rf /"])).toBe(false);
    expect(hostProcessCovers(["sh -c"], ["sh -c", "rm -rf /"].join(" "))).toBe(true);
    expect(argvCovered(["git status"], ["git", "status --exec=x"])).toBe(false);
    expect(argvCovered(["ls"], ["ls; rm -rf /"])).toBe(false);
    expect(argvCovered(["ls"], ["ls ", "x"])).toBe(false);
  });

  it("blank entries, entries with empty words and an empty argv cover nothing", () => {
    expect(argvCovered(["", " ", "ls  -l", " ls", "ls "], ["ls", "-l"])).toBe(false);
    expect(argvCovered(["ls"], [])).toBe(false);
  });
});

describe("commandLine", () => {
  it("joins with spaces and cuts long lines", () => {
    expect(commandLine(["echo", "a b"])).toBe("echo a b");
    const long = commandLine(["x".repeat(5000)], 100);
    expect(long).toHaveLength(100);
    expect(long.endsWith("…")).toBe(true);
  });
});
