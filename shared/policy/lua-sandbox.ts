// A clean Lua state for policy scripts, BalanceDNS's sandbox: the base,
// string, table and math libraries and nothing else. No os, io, package or
// debug library is opened (their modules are not even imported), and the
// base library's ways to reach code or files outside the script are taken
// out: dofile, loadfile, load (which could also load bytecode), require.
// Reading one of those names, or os/io/package/debug, raises an error that
// says the sandbox has no such thing, instead of Lua's vague "attempt to
// index a nil value". print goes to the caller's log; string.rep is
// capped so one call cannot build a huge string.

import { core, LIBRARIES, type LuaState, lauxlib, lua } from "./fengari.ts";

/**
 * Names a policy script cannot reach: each read raises "<name> is not
 * available". (coroutine and utf8 are not opened either, but read as nil,
 * so feature tests such as `if utf8 then` keep working.)
 */
export const SANDBOX_ABSENT = [
  "os",
  "io",
  "package",
  "debug",
  "require",
  "dofile",
  "loadfile",
  "load",
] as const;

/** The longest string string.rep may build (bytes). */
export const MAX_REP_BYTES = 1024 * 1024;

// Runs inside the state before the script: caps string.rep by its result's
// size (one call could otherwise ask for gigabytes); string.dump is of no
// use without a bytecode loader.
const PRELUDE = `
local rep, tostring, type, error = string.rep, tostring, type, error
string.rep = function(s, n, sep)
  if type(n) == "number" and n > 0 then
    local size = #tostring(s) * n
    if sep ~= nil then size = size + #tostring(sep) * (n - 1) end
    if size > ${MAX_REP_BYTES} then
      error("string.rep: result over ${MAX_REP_BYTES} bytes", 2)
    end
  end
  return rep(s, n, sep)
end
string.dump = nil
`;

/** A fresh sandboxed state; `print` calls `onPrint` with the line. */
export function createSandboxState(onPrint: (line: string) => void): LuaState {
  const L = lauxlib.luaL_newstate();
  for (const [name, open] of LIBRARIES) {
    lauxlib.luaL_requiref(L, core.to_luastring(name), open, 1);
    lua.lua_pop(L, 1);
  }
  for (const name of SANDBOX_ABSENT) {
    lua.lua_pushnil(L);
    lua.lua_setglobal(L, name);
  }
  lua.lua_pushcfunction(L, (state) => printLine(state, onPrint));
  lua.lua_setglobal(L, "print");
  guardGlobals(L);
  runPrelude(L);
  return L;
}

function printLine(L: LuaState, onPrint: (line: string) => void): number {
  const n = lua.lua_gettop(L);
  const parts: string[] = [];
  for (let i = 1; i <= n; i++) {
    parts.push(core.to_jsstring(lauxlib.luaL_tolstring(L, i)));
    lua.lua_pop(L, 1);
  }
  onPrint(parts.join("\t").slice(0, 500));
  return 0;
}

/** A metatable on _G whose __index names what the sandbox leaves out. */
function guardGlobals(L: LuaState): void {
  const absent = new Set<string>(SANDBOX_ABSENT);
  lua.lua_getglobal(L, "_G");
  lua.lua_createtable(L, 0, 2);
  lua.lua_pushcfunction(L, (state) => {
    const key = lua.lua_type(state, 2) === lua.LUA_TSTRING ? lua.lua_tojsstring(state, 2) : null;
    if (key !== null && absent.has(key)) {
      lauxlib.luaL_error(
        state,
        core.to_luastring(
          `${key} is not available in the policy sandbox (no os, io, package, debug, require, load or files)`,
        ),
      );
    }
    lua.lua_pushnil(state);
    return 1;
  });
  lua.lua_setfield(L, -2, "__index");
  // getmetatable(_G) gives false and setmetatable(_G, ...) fails: the guard stays.
  lua.lua_pushboolean(L, false);
  lua.lua_setfield(L, -2, "__metatable");
  lua.lua_setmetatable(L, -2);
  lua.lua_pop(L, 1);
}

function runPrelude(L: LuaState): void {
  const code = core.to_luastring(PRELUDE);
  const status = lauxlib.luaL_loadbufferx(
    L,
    code,
    code.length,
    core.to_luastring("=prelude"),
    core.to_luastring("t"),
  );
  if (status !== lua.LUA_OK || lua.lua_pcall(L, 0, 0, 0) !== lua.LUA_OK) {
    const message = lua.lua_tojsstring(L, -1);
    lua.lua_pop(L, 1);
    throw new Error(`Lua sandbox prelude failed: ${message}`);
  }
}
