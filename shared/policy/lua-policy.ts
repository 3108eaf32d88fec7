// Lua policy scripts with BalanceDNS's contract: the script defines
// `handle(question)` and returns FORWARD | BLOCK | REWRITE | LOCAL_DATA.
// The script is compiled (text only, never bytecode) and run once in a
// sandboxed state (lua-sandbox.ts); each question is one handle() call.
//
// Every call, and the load, runs under an instruction budget counted by a
// Lua count hook, not a clock: workerd's clock stands still while a script
// runs, and a count cuts a runaway script off at the same point in every
// runtime. Once the budget is spent the hook fires on every further
// instruction, so a script cannot pcall its way past it. A script that
// fails to load is refused (LuaPolicyError "load"); a call that fails
// throws LuaPolicyError "budget", "runtime" or "bad_output" and the caller
// answers with its on_error decision. Globals a script sets live as long as
// its state: one per relay process, one per worker isolate.

import { core, type LuaState, lauxlib, lua } from "./fengari.ts";
import { createSandboxState } from "./lua-sandbox.ts";
import { LuaResultError, pushQuestion, readResult } from "./lua-values.ts";
import { decisionFromPluginOutput, type PluginInput, pluginInput } from "./plugin-output.ts";
import type { Decision } from "./rules.ts";

/** Lua VM instructions one handle() call (or the script's load) may run. */
export const DEFAULT_MAX_INSTRUCTIONS = 1_000_000;

export type LuaPolicyErrorCode = "load" | "budget" | "runtime" | "bad_output";

export class LuaPolicyError extends Error {
  readonly code: LuaPolicyErrorCode;
  constructor(code: LuaPolicyErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

export interface LuaPolicyOptions {
  /** The script's name in messages (`policy.lua:3: ...`). */
  name: string;
  maxInstructions?: number;
  /** Where the script's print() lines go (default: nowhere). */
  onPrint?: (line: string) => void;
}

export interface LuaPolicy {
  readonly name: string;
  /** handle()'s result as plugin output (plain data); throws LuaPolicyError. */
  handle(question: PluginInput["question"]): unknown;
  /** The decision for a question; throws LuaPolicyError. */
  decide(name: string, qtype: number): Decision;
}

interface Vm {
  L: LuaState;
  /** Set by the hook when the current run spent its budget. */
  exhausted: boolean;
}

function errorText(L: LuaState): string {
  const text =
    lua.lua_type(L, -1) === lua.LUA_TSTRING ? lua.lua_tojsstring(L, -1) : "(error is not a string)";
  lua.lua_pop(L, 1);
  return (text ?? "").slice(0, 300);
}

/** Arms the budget: the hook fires after `max` instructions, then on every one. */
function arm(vm: Vm, max: number): void {
  vm.exhausted = false;
  const hook = (L: LuaState) => {
    vm.exhausted = true;
    lua.lua_sethook(L, hook, lua.LUA_MASKCOUNT, 1);
    lauxlib.luaL_error(L, core.to_luastring(`instruction budget of ${max} spent`));
  };
  lua.lua_sethook(vm.L, hook, lua.LUA_MASKCOUNT, max);
}

function start(source: string, options: Required<LuaPolicyOptions>): Vm {
  const L = createSandboxState(options.onPrint);
  const vm: Vm = { L, exhausted: false };
  const code = core.to_luastring(source);
  const status = lauxlib.luaL_loadbufferx(
    L,
    code,
    code.length,
    core.to_luastring(`@${options.name}`),
    core.to_luastring("t"),
  );
  if (status !== lua.LUA_OK) throw new LuaPolicyError("load", errorText(L));
  arm(vm, options.maxInstructions);
  const ran = lua.lua_pcall(L, 0, 0, 0);
  lua.lua_sethook(L, null, 0, 0);
  if (ran !== lua.LUA_OK) {
    const why = errorText(L);
    throw new LuaPolicyError(
      "load",
      vm.exhausted ? `the script's top level ran past its budget (${why})` : why,
    );
  }
  if (lua.lua_getglobal(L, "handle") !== lua.LUA_TFUNCTION) {
    throw new LuaPolicyError("load", "the script defines no function handle(question)");
  }
  lua.lua_settop(L, 0);
  return vm;
}

function call(vm: Vm, question: PluginInput["question"], max: number): unknown {
  const { L } = vm;
  lua.lua_settop(L, 0);
  lua.lua_getglobal(L, "handle");
  pushQuestion(L, question);
  arm(vm, max);
  const status = lua.lua_pcall(L, 1, 1, 0);
  lua.lua_sethook(L, null, 0, 0);
  if (status !== lua.LUA_OK) {
    const why = errorText(L);
    if (vm.exhausted) throw new LuaPolicyError("budget", `cut off: ${why}`);
    throw new LuaPolicyError("runtime", why);
  }
  try {
    return readResult(L, 1);
  } catch (error) {
    if (error instanceof LuaResultError) throw new LuaPolicyError("bad_output", error.message);
    throw error;
  } finally {
    lua.lua_settop(L, 0);
  }
}

/** Compiles and runs `source` once; throws LuaPolicyError "load" when it cannot serve. */
export function loadLuaPolicy(source: string, options: LuaPolicyOptions): LuaPolicy {
  const settings: Required<LuaPolicyOptions> = {
    name: options.name,
    maxInstructions: options.maxInstructions ?? DEFAULT_MAX_INSTRUCTIONS,
    onPrint: options.onPrint ?? (() => {}),
  };
  let vm = start(source, settings);
  const handle = (question: PluginInput["question"]): unknown => {
    try {
      return call(vm, question, settings.maxInstructions);
    } catch (error) {
      if (error instanceof LuaPolicyError) throw error;
      // A JavaScript error inside the VM (a stack overflow, a fengari bug)
      // may leave the state half-changed: start over from the source.
      vm = start(source, settings);
      throw new LuaPolicyError(
        "runtime",
        `VM error, state reloaded: ${String(error).slice(0, 200)}`,
      );
    }
  };
  return {
    name: settings.name,
    handle,
    decide(name, qtype) {
      const decision = decisionFromPluginOutput(handle(pluginInput(name, qtype).question));
      if (decision instanceof Error) throw new LuaPolicyError("bad_output", decision.message);
      return decision;
    },
  };
}
