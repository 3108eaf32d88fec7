// Exec plugins (BalanceDNS's go_exec protocol): a program gets the question as
// JSON on stdin and answers with one JSON object on stdout. It runs with an
// empty environment and a strict timeout; its output is capped.
//   per_query:  a process per question (BalanceDNS's plugins work unchanged);
//   persistent: one long-running process, one JSON line in and one out per
//               question, in order; restarted after a crash or a timeout.
// A plugin that fails (timeout, crash, garbage, flood) never holds a query:
// the chain answers with the configured on_error decision. Lua entries
// (runtime: lua, lua-plugin.ts) take their place in the same chain.

import type { Buffer } from "node:buffer";
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import {
  ConfigError,
  type ExecPluginEntryConfig,
  type PluginsConfig,
} from "../../shared/config/schema.ts";
import { DohEdgeError } from "../../shared/errors.ts";
import {
  decisionFromPluginOutput,
  onErrorDecision,
  type PluginInput,
  pluginInput,
} from "../../shared/policy/plugin-output.ts";
import type { Decision } from "../../shared/policy/rules.ts";
import { createLuaPlugin, type LuaPluginOptions } from "./lua-plugin.ts";

const MAX_OUTPUT = 64 * 1024;

export type PluginErrorCode =
  | "timeout"
  | "crash"
  | "bad_output"
  | "overflow"
  | "spawn"
  /** A Lua script ran past its instruction budget. */
  | "budget"
  /** A Lua script raised an error. */
  | "runtime";

export class PluginError extends DohEdgeError {
  override readonly name = "PluginError";
  readonly code: PluginErrorCode;
  constructor(code: PluginErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

export interface ExecPlugin {
  readonly name: string;
  /** The plugin's raw output for `input`, parsed as JSON; rejects with a PluginError. */
  ask(input: PluginInput): Promise<unknown>;
  close(): void;
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new PluginError("bad_output", `not JSON: ${JSON.stringify(text.slice(0, 60))}`);
  }
}

function perQuery(entry: ExecPluginEntryConfig): ExecPlugin {
  const running = new Set<ChildProcessWithoutNullStreams>();
  return {
    name: entry.name,
    ask(input) {
      return new Promise((resolve, reject) => {
        let child: ChildProcessWithoutNullStreams;
        try {
          child = spawn(entry.path, entry.args, { env: {}, stdio: "pipe" });
        } catch (error) {
          reject(new PluginError("spawn", (error as Error).message));
          return;
        }
        running.add(child);
        let output = "";
        let settled = false;
        const finish = (error: PluginError | undefined, value?: unknown) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
          if (error) reject(error);
          else resolve(value);
        };
        const timer = setTimeout(
          () => finish(new PluginError("timeout", `no answer within ${entry.timeout} ms`)),
          entry.timeout,
        );
        child.on("error", (error) => finish(new PluginError("spawn", error.message)));
        child.stdin.on("error", () => {});
        child.stdout.on("data", (chunk: Buffer) => {
          output += chunk.toString("utf8");
          if (output.length > MAX_OUTPUT) finish(new PluginError("overflow", "output over 64 KiB"));
        });
        child.on("close", (code, signal) => {
          running.delete(child);
          if (settled) return;
          if (code !== 0) {
            finish(new PluginError("crash", `exited with ${signal ?? `code ${code}`}`));
            return;
          }
          try {
            finish(undefined, parse(output.trim()));
          } catch (error) {
            finish(error as PluginError);
          }
        });
        child.stdin.end(`${JSON.stringify(input)}\n`);
      });
    },
    close() {
      for (const child of running) child.kill("SIGKILL");
    },
  };
}

interface Waiting {
  input: PluginInput;
  resolve(value: unknown): void;
  reject(error: PluginError): void;
}

/** Answers a question with its plugin's output line (or the reason it is not an answer). */
function settleWith(waiting: Waiting, line: string): void {
  try {
    waiting.resolve(parse(line.trim()));
  } catch (error) {
    waiting.reject(error as PluginError);
  }
}

/** A persistent plugin's process, its events reported as text. */
function spawnPersistent(
  entry: ExecPluginEntryConfig,
  on: { error(message: string): void; exit(why: string): void; data(text: string): void },
): ChildProcessWithoutNullStreams {
  const proc = spawn(entry.path, entry.args, { env: {}, stdio: "pipe" });
  proc.stdin.on("error", () => {});
  proc.on("error", (error) => on.error(error.message));
  proc.on("close", (code, signal) => on.exit(`exited with ${signal ?? `code ${code}`}`));
  proc.stdout.on("data", (chunk: Buffer) => on.data(chunk.toString("utf8")));
  return proc;
}

/** One process for all questions, one JSON line in and one out each, asked in turn. */
class PersistentPlugin implements ExecPlugin {
  readonly name: string;
  private child: ChildProcessWithoutNullStreams | undefined;
  private buffered = "";
  private readonly queue: Waiting[] = [];
  private current: (Waiting & { timer: ReturnType<typeof setTimeout> }) | undefined;
  private closed = false;
  private readonly entry: ExecPluginEntryConfig;

  constructor(entry: ExecPluginEntryConfig) {
    this.entry = entry;
    this.name = entry.name;
  }

  ask(input: PluginInput): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new PluginError("spawn", "plugin closed"));
        return;
      }
      this.queue.push({ input, resolve, reject });
      this.next();
    });
  }

  close(): void {
    this.closed = true;
    this.stop(new PluginError("spawn", "plugin closed"));
    for (const waiting of this.queue.splice(0)) {
      waiting.reject(new PluginError("spawn", "plugin closed"));
    }
  }

  /** Kills the process (a fresh one starts for the next question) and fails the current one. */
  private stop(reason: PluginError): void {
    const proc = this.child;
    this.child = undefined;
    this.buffered = "";
    if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    const current = this.current;
    this.current = undefined;
    if (current) {
      clearTimeout(current.timer);
      current.reject(reason);
    }
  }

  /** Output of the running process: the current question's answer is its next line. */
  private received(text: string): void {
    this.buffered += text;
    if (this.buffered.length > MAX_OUTPUT) {
      this.stop(new PluginError("overflow", "line over 64 KiB"));
      this.next();
      return;
    }
    const newline = this.buffered.indexOf("\n");
    const done = this.current;
    if (newline < 0 || !done) return;
    const line = this.buffered.slice(0, newline);
    this.buffered = this.buffered.slice(newline + 1);
    this.current = undefined;
    clearTimeout(done.timer);
    settleWith(done, line);
    this.next();
  }

  private start(): ChildProcessWithoutNullStreams {
    const proc: ChildProcessWithoutNullStreams = spawnPersistent(this.entry, {
      error: (message) => {
        if (this.child === proc) this.stop(new PluginError("spawn", message));
        this.next();
      },
      exit: (why) => {
        if (this.child !== proc) return;
        this.stop(new PluginError("crash", why));
        this.next();
      },
      data: (text) => {
        if (this.child === proc) this.received(text);
      },
    });
    return proc;
  }

  /** Asks the next waiting question, unless one is being answered. */
  private next(): void {
    if (this.current || this.closed) return;
    const waiting = this.queue.shift();
    if (!waiting) return;
    let child: ChildProcessWithoutNullStreams;
    try {
      child = this.child ??= this.start();
    } catch (error) {
      waiting.reject(new PluginError("spawn", (error as Error).message));
      this.next();
      return;
    }
    const timer = setTimeout(() => {
      // A hung plugin: kill it; the next question starts a fresh one.
      this.stop(new PluginError("timeout", `no answer within ${this.entry.timeout} ms`));
      this.next();
    }, this.entry.timeout);
    this.current = { ...waiting, timer };
    child.stdin.write(`${JSON.stringify(waiting.input)}\n`);
  }
}

export function createExecPlugin(entry: ExecPluginEntryConfig): ExecPlugin {
  return entry.mode === "persistent" ? new PersistentPlugin(entry) : perQuery(entry);
}

export interface PluginChain {
  /** The first non-FORWARD decision of the plugins in order; on_error's decision when one fails. */
  decide(name: string, qtype: number): Promise<Decision | { action: "servfail" }>;
  /** Failures by plugin and error code. */
  errors(): Record<string, number>;
  close(): void;
}

/** Builds every entry's plugin; a Lua script that cannot load throws ConfigError at its path key. */
export function createPluginChain(
  config: PluginsConfig,
  onError: (plugin: string, error: PluginError) => void = () => {},
  lua: LuaPluginOptions = {},
): PluginChain {
  const plugins = config.entries.map((entry, i) => {
    if (entry.runtime !== "lua") return createExecPlugin(entry);
    try {
      return createLuaPlugin(entry, lua);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new ConfigError([{ path: ["plugins", "entries", i, "path"], message }]);
    }
  });
  const errors: Record<string, number> = {};
  const fallback = () => onErrorDecision(config.on_error);
  return {
    async decide(name, qtype) {
      const input = pluginInput(name, qtype);
      for (const plugin of plugins) {
        let decision: Decision;
        try {
          const result = decisionFromPluginOutput(await plugin.ask(input));
          if (result instanceof Error) throw new PluginError("bad_output", result.message);
          decision = result;
        } catch (error) {
          const failure =
            error instanceof PluginError ? error : new PluginError("crash", String(error));
          const key = `${plugin.name}\u0000${failure.code}`;
          errors[key] = (errors[key] ?? 0) + 1;
          onError(plugin.name, failure);
          return fallback();
        }
        if (decision.action !== "pass") return decision;
      }
      return { action: "pass" };
    },
    errors: () => ({ ...errors }),
    close() {
      for (const plugin of plugins) plugin.close();
    },
  };
}
