/**
 * The stdio transport of one MCP server process, for the SDK's `Client`. The SDK ships one, but it hides what the
 * daemon must know and bound: the exit code and signal, a stop that escalates from SIGTERM to SIGKILL after a grace,
 * stderr as lines, and the size of a message — its read buffer concatenates every chunk into one Buffer (quadratic
 * for a 50 MB line) and closes the whole server when a line is too long. Here a line past the cap is skipped
 * without being held, and the request it answered gets an error at once, so the server keeps serving.
 */
import { spawn, type ChildProcess } from "node:child_process";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { JSONRPCMessageSchema, type JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { MCP_STDERR_LINE_CHARS, type McpExit } from "../../protocol/mcp-host";

/** The JSON-RPC error code a skipped, oversized answer is turned into (outside the spec's reserved codes). */
export const RESULT_TOO_LARGE_CODE = -32090;

/** What the transport reports beside the SDK's callbacks. */
export interface StdioHooks {
  stderrLine(line: string): void;
  exited(exit: McpExit): void;
}

/** How to start the process. */
export interface StdioCommand {
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd?: string;
}

/** A child process speaking newline-delimited JSON-RPC on stdin/stdout. */
export class ChildStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  private child: ChildProcess | undefined;
  private exit: McpExit | undefined;
  private readonly gone: Promise<void>;
  private markGone!: () => void;
  /** The current stdout line, as chunks (joined once, when its newline arrives). */
  private lineChunks: Buffer[] = [];
  private lineBytes = 0;
  /** The head and tail of a line being skipped for its size (where its id is), and its total length so far. */
  private skipping: { head: string; tail: string; bytes: number } | undefined;
  private stderrPartial = "";
  private stderrSkipping = false;

  constructor(
    private readonly cmd: StdioCommand,
    private readonly hooks: StdioHooks,
    /** Longest stdout line (one JSON-RPC message) accepted. */
    private readonly maxLineBytes: number,
  ) {
    this.gone = new Promise((resolve) => (this.markGone = resolve));
  }

  /** The process id once spawned. */
  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /** How the process ended, once it has. */
  get exited(): McpExit | undefined {
    return this.exit;
  }

  start(): Promise<void> {
    if (this.child) throw new Error("transport already started");
    return new Promise((resolve, reject) => {
      // An argument array and no shell: nothing in `args` is ever interpreted.
      const child = spawn(this.cmd.command, this.cmd.args, { env: this.cmd.env, cwd: this.cmd.cwd, stdio: ["pipe", "pipe", "pipe"], shell: false });
      this.child = child;
      let spawned = false;
      child.once("spawn", () => {
        spawned = true;
        resolve();
      });
      child.on("error", (err: NodeJS.ErrnoException) => {
        if (!spawned) {
          this.finish({ code: null, signal: null, reason: `cannot start ${JSON.stringify(this.cmd.command)}: ${err.code ?? err.message}` });
          reject(new Error(`cannot start ${JSON.stringify(this.cmd.command)}: ${err.code === "ENOENT" ? "no such file or directory" : err.message}`));
          return;
        }
        this.onerror?.(err);
      });
      // 'close' comes once stdout is drained too (its last answers are read); a descendant still holding the pipes
      // open must not keep the exit from being noticed, hence the fallback a second after 'exit'.
      const ended = (code: number | null, signal: NodeJS.Signals | null) =>
        this.finish({ code, signal, reason: signal ? `killed by ${signal}` : `exited with code ${code}` });
      child.on("exit", (code, signal) => setTimeout(() => ended(code, signal), 1000).unref());
      child.on("close", ended);
      child.stdin!.on("error", () => undefined); // EPIPE once it died: its exit says why
      child.stdout!.on("data", (chunk: Buffer) => this.readStdout(chunk));
      child.stderr!.setEncoding("utf8");
      child.stderr!.on("data", (text: string) => this.readStderr(text));
    });
  }

  send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.child?.stdin;
    if (!stdin || this.exit || stdin.destroyed) return Promise.reject(new Error("the server process is not running"));
    return new Promise((resolve) => {
      if (stdin.write(`${JSON.stringify(message)}\n`)) resolve();
      else stdin.once("drain", resolve);
    });
  }

  /** Closes stdin and sends SIGTERM; SIGKILL after `graceMs`. Resolves once the process is gone. */
  async stop(graceMs: number): Promise<void> {
    const child = this.child;
    if (!child || this.exit) return this.gone;
    child.stdin?.end();
    child.kill("SIGTERM");
    const kill = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await this.gone;
    clearTimeout(kill);
  }

  /** The SDK's close (Client.close): stop with a short grace. */
  close(): Promise<void> {
    return this.stop(2000);
  }

  private finish(exit: McpExit): void {
    if (this.exit) return;
    this.exit = exit;
    this.flushStderr();
    this.markGone();
    // A listener's mistake must not become an uncaught exception that ends the whole MCP host thread.
    try {
      this.hooks.exited(exit);
    } finally {
      this.onclose?.();
    }
  }

  private readStdout(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(10, start);
      const end = nl === -1 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      if (this.skipping) {
        this.skipping.bytes += piece.length;
        this.skipping.tail = (this.skipping.tail + piece.subarray(-512).toString("latin1")).slice(-512);
      } else if (this.lineBytes + piece.length > this.maxLineBytes) {
        // Too long to accept: keep only its ends (the id it answers is at one of them) and count the rest.
        const head = Buffer.concat([...this.lineChunks, piece]).subarray(0, 512).toString("latin1");
        this.skipping = { head, tail: piece.subarray(-512).toString("latin1"), bytes: this.lineBytes + piece.length };
        this.lineChunks = [];
        this.lineBytes = 0;
      } else if (piece.length > 0) {
        this.lineChunks.push(piece);
        this.lineBytes += piece.length;
      }
      if (nl === -1) return;
      this.endLine();
      start = nl + 1;
    }
  }

  private endLine(): void {
    if (this.skipping) {
      const { head, tail, bytes } = this.skipping;
      this.skipping = undefined;
      this.answerOversized(head, tail, bytes);
      return;
    }
    const line = Buffer.concat(this.lineChunks, this.lineBytes).toString("utf8").replace(/\r$/, "");
    this.lineChunks = [];
    this.lineBytes = 0;
    if (line.trim() === "") return;
    let message: JSONRPCMessage;
    try {
      message = JSONRPCMessageSchema.parse(JSON.parse(line));
    } catch (err) {
      this.onerror?.(new Error(`the server wrote a line that is not a JSON-RPC message: ${(err as Error).message.slice(0, 200)}`));
      return;
    }
    this.onmessage?.(message);
  }

  /** A skipped line that answered a request: that request fails now instead of at its deadline. */
  private answerOversized(head: string, tail: string, bytes: number): void {
    // A response's members may come in any order: `{"jsonrpc":"2.0","id":3,"result":…}` or `{"result":…,"id":3}`.
    const id = /^\s*\{[^{]*?"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")/.exec(head)?.[1] ?? /"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")\s*\}\s*$/.exec(tail)?.[1];
    if (id === undefined || !/"(result|error)"\s*:/.test(head)) {
      this.onerror?.(new Error(`skipped a message of ${bytes} bytes (more than ${this.maxLineBytes})`));
      return;
    }
    this.onmessage?.({
      jsonrpc: "2.0",
      id: JSON.parse(id) as string | number,
      error: { code: RESULT_TOO_LARGE_CODE, message: `the answer is ${bytes} bytes, more than the ${this.maxLineBytes} allowed` },
    });
  }

  private readStderr(text: string): void {
    const parts = text.split("\n");
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      const last = i === parts.length - 1;
      if (!this.stderrSkipping) {
        this.stderrPartial += part;
        if (this.stderrPartial.length > MCP_STDERR_LINE_CHARS) {
          // An endless line is cut and its rest skipped, so stderr never holds more than one line's worth.
          this.hooks.stderrLine(`${this.stderrPartial.slice(0, MCP_STDERR_LINE_CHARS)}… (cut)`);
          this.stderrPartial = "";
          this.stderrSkipping = true;
        }
      }
      if (last) return;
      if (!this.stderrSkipping && this.stderrPartial !== "") this.hooks.stderrLine(this.stderrPartial.replace(/\r$/, ""));
      this.stderrPartial = "";
      this.stderrSkipping = false;
    }
  }

  private flushStderr(): void {
    if (this.stderrPartial !== "" && !this.stderrSkipping) this.hooks.stderrLine(this.stderrPartial);
    this.stderrPartial = "";
  }
}
