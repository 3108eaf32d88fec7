// The one gateway to fengari (a Lua 5.3 VM in plain JavaScript). Its
// modules require each other in cycles, so the order here is fengari's own
// (src/fengari.js): fengaricore.js first (defs.js must run before
// luaconf.js, or LUA_REGISTRYINDEX comes out NaN), lualib.js before any
// single library (else linit.js reads a half-loaded lstrlib.js). lualib.js
// loads every library's JavaScript module, os and io included, but a Lua
// state only has the libraries opened in it: a policy state opens the four
// below and nothing else (lua-sandbox.ts).

import core from "fengari/src/fengaricore.js";
import lauxlib from "fengari/src/lauxlib.js";
import lua from "fengari/src/lua.js";
import lualib from "fengari/src/lualib.js";

export type { LuaState } from "fengari/src/lua.js";
export { core, lauxlib, lua };

/** The libraries a policy script gets, BalanceDNS's set. */
export const LIBRARIES = [
  ["_G", lualib.luaopen_base],
  ["string", lualib.luaopen_string],
  ["table", lualib.luaopen_table],
  ["math", lualib.luaopen_math],
] as const;
