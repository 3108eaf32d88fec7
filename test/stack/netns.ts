// Runs a bash script in a network namespace of its own (only loopback, brought
// up first), optionally with a private mount namespace: nothing the script
// starts can reach beyond this machine. Needs util-linux's unshare; a plain
// user gets the namespaces through a user namespace of its own (root in it).

import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export async function runInNetns(
  script: string,
  options: { mount?: boolean; timeoutMs: number },
): Promise<string> {
  const { stdout } = await run(
    "unshare",
    [
      ...(process.getuid?.() === 0 ? [] : ["--map-root-user"]),
      "--net",
      ...(options.mount ? ["--mount"] : []),
      "--",
      "bash",
      "-c",
      `ip link set lo up\n${script}`,
    ],
    { cwd: ROOT, timeout: options.timeoutMs, maxBuffer: 8 * 1024 * 1024 },
  );
  return stdout;
}

/** `key=value` lines of a script's output. */
export function fieldsOf(stdout: string): Record<string, string> {
  return Object.fromEntries(
    stdout
      .split("\n")
      .filter((line) => /^\w+=/.test(line))
      .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
  );
}

/** Bash: start `node scripts/stack.ts ARGS` logging to LOG, wait until it is up (or exit 1). */
export function startStackScript(args: string, log: string): string {
  return `
"${process.execPath}" scripts/stack.ts ${args} > "${log}" 2>&1 &
pid=$!
for i in $(seq 1 300); do grep -q "Ctrl-C stops everything" "${log}" && break; sleep 0.2; done
if ! grep -q "Ctrl-C stops everything" "${log}"; then echo "not_ready"; kill -9 $pid; exit 1; fi
`;
}

/** Bash: Ctrl-C the stack, wait, and report its exit code and the listeners left. */
export const STOP_STACK_SCRIPT = `
kill -INT $pid
wait $pid
echo "exit=$?"
sleep 0.5
echo "listeners=$(ss -Hltun | wc -l)"
`;
