/**
 * Which commands a `host_process` list (a capsule manifest's, or a principal profile's `[process] allow`) covers.
 * One rule for every caller: an entry covers a command line equal to it, or one that starts with the entry and a
 * space — `git` covers `git status` but not `gitx`; `git status` covers `git status -s`. MCP server commands are
 * checked with it too.
 */

/**
 * Whether an entry of `entries` equals `command` or is followed in it by a space (the reference's rule for a
 * command given as one string, such as a `[[mcp_server]]` command). Empty entries cover nothing.
 */
export function hostProcessCovers(entries: readonly string[], command: string): boolean {
  return entries.some((entry) => entry !== "" && (command === entry || command.startsWith(`${entry} `)));
}

/**
 * Whether `argv` is covered: the same rule applied word by word — the entry's space-separated words must be the
 * first elements of `argv`. For arguments without spaces this is exactly `hostProcessCovers(entries,
 * argv.join(" "))`; unlike the joined string it cannot be fooled by an argument that carries a space
 * (`["git", "status --exec=x"]` is not covered by `git status`), and an `argv[0]` such as `"ls; rm -rf /"` is
 * never `ls`.
 */
export function argvCovered(entries: readonly string[], argv: readonly string[]): boolean {
  if (argv.length === 0) return false;
  return entries.some((entry) => {
    if (entry.trim() === "") return false;
    const words = entry.split(" ");
    // An entry with doubled, leading or trailing spaces names an empty word no argv element should be matched against.
    if (words.some((w) => w === "")) return false;
    return words.length <= argv.length && words.every((word, i) => argv[i] === word);
  });
}

/** The command line an audit entry and a permission check name: argv joined by spaces, cut at `maxChars`. */
export function commandLine(argv: readonly string[], maxChars = 1024): string {
  const line = argv.join(" ");
  return line.length > maxChars ? `${line.slice(0, maxChars - 1)}…` : line;
}
