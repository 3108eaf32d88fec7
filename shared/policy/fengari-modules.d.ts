// Type shim for the parts of fengari (a Lua 5.3 VM in plain JavaScript) that
// shared/policy/fengari.ts imports. fengari ships no types; each module is
// CommonJS, imported as its default export.

declare module "fengari/src/lua.js" {
  export interface LuaState {
    readonly __luaState: unique symbol;
  }
  export type LuaJsFunction = (L: LuaState) => number;
  export type LuaHook = (L: LuaState, ar: unknown) => void;
  const lua: {
    LUA_OK: number;
    LUA_MASKCOUNT: number;
    LUA_MULTRET: number;
    LUA_TNIL: number;
    LUA_TBOOLEAN: number;
    LUA_TNUMBER: number;
    LUA_TSTRING: number;
    LUA_TTABLE: number;
    LUA_TFUNCTION: number;
    lua_absindex(L: LuaState, idx: number): number;
    lua_createtable(L: LuaState, narr: number, nrec: number): void;
    lua_getfield(L: LuaState, idx: number, k: string): number;
    lua_getglobal(L: LuaState, name: string): number;
    lua_gettop(L: LuaState): number;
    lua_isinteger(L: LuaState, idx: number): boolean;
    lua_next(L: LuaState, idx: number): boolean;
    lua_pcall(L: LuaState, nargs: number, nresults: number, msgh: number): number;
    lua_pop(L: LuaState, n: number): void;
    lua_pushboolean(L: LuaState, b: boolean): void;
    lua_pushcfunction(L: LuaState, fn: LuaJsFunction): void;
    lua_pushinteger(L: LuaState, n: number): void;
    lua_pushnil(L: LuaState): void;
    lua_pushstring(L: LuaState, s: string): void;
    lua_pushvalue(L: LuaState, idx: number): void;
    lua_rawlen(L: LuaState, idx: number): number;
    lua_setfield(L: LuaState, idx: number, k: string): void;
    lua_setglobal(L: LuaState, name: string): void;
    lua_sethook(L: LuaState, hook: LuaHook | null, mask: number, count: number): void;
    lua_setmetatable(L: LuaState, idx: number): void;
    lua_settop(L: LuaState, idx: number): void;
    lua_toboolean(L: LuaState, idx: number): boolean;
    lua_tojsstring(L: LuaState, idx: number): string | null;
    lua_tointeger(L: LuaState, idx: number): number;
    lua_tonumber(L: LuaState, idx: number): number;
    lua_type(L: LuaState, idx: number): number;
    lua_typename(L: LuaState, t: number): Uint8Array;
  };
  export default lua;
}

declare module "fengari/src/lauxlib.js" {
  import type { LuaJsFunction, LuaState } from "fengari/src/lua.js";

  const lauxlib: {
    luaL_newstate(): LuaState;
    luaL_requiref(L: LuaState, modname: Uint8Array, openf: LuaJsFunction, glb: number): void;
    luaL_loadbufferx(
      L: LuaState,
      buff: Uint8Array,
      size: number,
      name: Uint8Array,
      mode: Uint8Array,
    ): number;
    luaL_error(L: LuaState, message: Uint8Array): never;
    luaL_checkstring(L: LuaState, arg: number): Uint8Array;
    luaL_tolstring(L: LuaState, idx: number): Uint8Array;
  };
  export default lauxlib;
}

declare module "fengari/src/fengaricore.js" {
  const core: {
    to_luastring(s: string): Uint8Array;
    to_jsstring(s: Uint8Array): string;
  };
  export default core;
}

declare module "fengari/src/lualib.js" {
  import type { LuaJsFunction } from "fengari/src/lua.js";

  const lualib: {
    luaopen_base: LuaJsFunction;
    luaopen_string: LuaJsFunction;
    luaopen_table: LuaJsFunction;
    luaopen_math: LuaJsFunction;
  };
  export default lualib;
}
