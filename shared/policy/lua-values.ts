// Values across the Lua boundary. In: the question as a fresh table. Out:
// handle()'s result as the plain object an exec plugin would have printed,
// read with raw access only (no metamethod of the script's runs here) and
// bounded in depth and size, so decisionFromPluginOutput validates both
// kinds of plugin the same way. BalanceDNS's Lua rules on top: nil means
// FORWARD, a string is an action name, a table without action forwards.

import { type LuaState, lua } from "./fengari.ts";
import type { PluginInput } from "./plugin-output.ts";

const MAX_DEPTH = 4;
const MAX_ENTRIES = 256;

export class LuaResultError extends Error {}

export function pushQuestion(L: LuaState, question: PluginInput["question"]): void {
  lua.lua_createtable(L, 0, 3);
  lua.lua_pushstring(L, question.domain);
  lua.lua_setfield(L, -2, "domain");
  lua.lua_pushstring(L, question.type);
  lua.lua_setfield(L, -2, "type");
  lua.lua_pushinteger(L, question.qtype);
  lua.lua_setfield(L, -2, "qtype");
}

/** handle()'s return value at `idx` as plugin output; throws LuaResultError. */
export function readResult(L: LuaState, idx: number): unknown {
  const type = lua.lua_type(L, idx);
  if (type === lua.LUA_TNIL) return { action: "FORWARD" };
  if (type === lua.LUA_TSTRING) {
    const action = lua.lua_tojsstring(L, idx) ?? "";
    if (action.toUpperCase() === "REWRITE") {
      throw new LuaResultError("REWRITE needs a table with rewrite_domain or rewrite_type");
    }
    return { action };
  }
  if (type !== lua.LUA_TTABLE) {
    throw new LuaResultError(
      `handle returned a ${typeName(L, type)}; expected a table, a string or nil`,
    );
  }
  const budget = { entries: MAX_ENTRIES };
  const output = readValue(L, lua.lua_absindex(L, idx), 1, budget);
  // An empty table reads as a list; here it is a result without an action.
  if (Array.isArray(output) && output.length === 0) return { action: "FORWARD" };
  if (typeof output === "object" && output !== null && !Array.isArray(output)) {
    const record = output as Record<string, unknown>;
    if (record.action === undefined) return { ...record, action: "FORWARD" };
  }
  return output;
}

function typeName(L: LuaState, type: number): string {
  return new TextDecoder().decode(lua.lua_typename(L, type));
}

interface Budget {
  entries: number;
}

function readValue(L: LuaState, idx: number, depth: number, budget: Budget): unknown {
  switch (lua.lua_type(L, idx)) {
    case lua.LUA_TSTRING:
      return lua.lua_tojsstring(L, idx);
    case lua.LUA_TNUMBER:
      return lua.lua_isinteger(L, idx) ? lua.lua_tointeger(L, idx) : lua.lua_tonumber(L, idx);
    case lua.LUA_TBOOLEAN:
      return lua.lua_toboolean(L, idx);
    case lua.LUA_TTABLE:
      if (depth > MAX_DEPTH)
        throw new LuaResultError(`result nested deeper than ${MAX_DEPTH} tables`);
      return readTable(L, idx, depth, budget);
    default:
      // Functions, userdata, nil: nothing a decision can hold.
      return undefined;
  }
}

/**
 * A table as a list when its keys are exactly 1..n (an empty table too: an
 * empty `ips = {}`), otherwise as an object of its string keys.
 */
function readTable(L: LuaState, idx: number, depth: number, budget: Budget): unknown {
  const byIndex: unknown[] = [];
  const byName: Record<string, unknown> = {};
  let named = 0;
  let count = 0;
  lua.lua_pushnil(L);
  while (lua.lua_next(L, idx)) {
    if (--budget.entries < 0) {
      lua.lua_pop(L, 2);
      throw new LuaResultError(`result has more than ${MAX_ENTRIES} entries`);
    }
    count++;
    const value = readValue(L, lua.lua_gettop(L), depth + 1, budget);
    const keyType = lua.lua_type(L, -2);
    if (keyType === lua.LUA_TNUMBER && lua.lua_isinteger(L, -2)) {
      const key = lua.lua_tointeger(L, -2);
      if (key >= 1 && key <= MAX_ENTRIES) byIndex[key - 1] = value;
    } else if (keyType === lua.LUA_TSTRING) {
      // Only string keys: lua_tojsstring on a number key would break lua_next.
      byName[lua.lua_tojsstring(L, -2) ?? ""] = value;
      named++;
    }
    lua.lua_pop(L, 1);
  }
  const isList = named === 0 && count === lua.lua_rawlen(L, idx) && byIndex.length === count;
  return isList ? byIndex : byName;
}
