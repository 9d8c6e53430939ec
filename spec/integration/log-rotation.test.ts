/**
 * The daemon's log rotates daily and keeps 7 files, tested with a clock the test controls: the daemon runs with
 * ASTRID_TEST_FAULTS=1 and the test moves the logger's clock (`clock <offset-ms>` in run/test-fault, then SIGUSR2:
 * kernel/test-faults.ts) — first to 1.5 s before midnight, so the running clock crosses it, then a day at a time.
 * Each crossing starts a new file, `astrid logs -f` follows across every rotation, and only the newest 7 remain.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import { CLI_BIN, cleanup, connect, sleep, spawnDaemon, until } from "../helpers/daemon";

let follower: ChildProcess | undefined;
afterAll(async () => {
  follower?.kill("SIGKILL");
  await cleanup();
});

const DAY_MS = 86_400_000;

/** The rotation's file name for a time: the local date, as file-stream-rotator formats YYYY-MM-DD. */
function fileFor(at: number): string {
  const d = new Date(at);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `astrid.${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}.log`;
}

describe("log rotation", () => {
  it("starts a new file each day, keeps 7, and `astrid logs -f` follows across the rotations", async () => {
    const d = await spawnDaemon({ env: { ASTRID_TEST_FAULTS: "1" } });
    const logDir = path.join(d.home, "log");
    const files = () => fs.readdirSync(logDir).filter((f) => /^astrid\.\d{4}-\d{2}-\d{2}\.log$/.test(f)).sort();
    const today = files();
    expect(today).toHaveLength(1);

    const tail = spawn(process.execPath, [CLI_BIN, "logs", "-f", "--json", "-n", "0"], { env: { ...process.env, ASTRID_HOME: d.home }, stdio: ["ignore", "pipe", "pipe"] });
    follower = tail;
    let followed = "";
    tail.stdout.on("data", (b: Buffer) => (followed += b.toString()));
    const followerExit = new Promise((r) => tail.once("exit", r));
    // -f follows once a line logged now (a client connecting) reaches it; it may take a while to start.
    const clients: DaemonClient[] = [];
    await until(async () => {
      clients.push(await connect(d));
      await sleep(300);
      return followed;
    }, (t) => t.includes('"message":"client connected"'), 15_000);

    const shift = async (offset: number) => {
      fs.writeFileSync(path.join(d.home, "run", "test-fault"), `clock ${offset}`);
      d.child.kill("SIGUSR2");
      await until(() => followed, (t) => t.includes(`"offset_ms":${offset}`), 10_000);
    };
    const contains = (name: string, text: string) => fs.existsSync(path.join(logDir, name)) && fs.readFileSync(path.join(logDir, name), "utf8").includes(text);

    // Crossing midnight with the clock running: 1.5 s before the next local midnight, then a line after it.
    const now = new Date();
    const toMidnight = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1).getTime() - now.getTime() - 1500;
    await shift(toMidnight);
    expect(files()).toEqual(today);
    expect(contains(today[0]!, `"offset_ms":${toMidnight}`)).toBe(true);
    await sleep(2000);
    clients.push(await connect(d));
    const tomorrow = fileFor(Date.now() + toMidnight);
    expect(tomorrow > today[0]!).toBe(true);
    await until(() => contains(tomorrow, '"message":"client connected"'), (ok) => ok, 10_000);
    expect(files()).toEqual([...today, tomorrow]);

    // Then a day at a time: each move's announcement is the new day's first line, in that day's file, and -f shows
    // it; the oldest file goes once there are more than 7.
    const seen = [...today, tomorrow];
    const offsets = [toMidnight];
    for (let day = 1; day <= 8; day++) {
      const offset = toMidnight + day * DAY_MS;
      offsets.push(offset);
      const name = fileFor(Date.now() + offset);
      await shift(offset);
      await until(() => contains(name, `"offset_ms":${offset}`), (ok) => ok, 10_000);
      seen.push(name);
      const kept = seen.slice(-7);
      await until(files, (f) => f.join() === kept.join(), 5000);
    }
    expect(files()).toHaveLength(7);
    expect(files()).not.toContain(today[0]);
    // -f printed each move once, in order, across the nine rotations, and the line after midnight too.
    const followedLines = followed.trim().split("\n").map((l) => JSON.parse(l) as { message: string; offset_ms?: number; timestamp: string });
    expect(followedLines.filter((l) => l.message === "test fault injected").map((l) => l.offset_ms)).toEqual(offsets);
    const afterMidnight = followedLines.filter((l) => l.message === "client connected").at(-1)!;
    expect(new Date(afterMidnight.timestamp).getDate()).not.toBe(now.getDate());

    tail.kill("SIGINT");
    follower = undefined;
    await followerExit;
    for (const c of clients) await c.close();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    // The daemon's last lines went to the newest day's file.
    expect(fs.readFileSync(path.join(logDir, files().at(-1)!), "utf8")).toMatch(/"message":"daemon stopped"/);
  }, 90_000);
});
