// The Lua policy scripts bundled into the worker, by the name a config's
// plugins.entries[].path gives. wrangler bundles each imported .lua file as
// text (the Text module rule for **/*.lua in wrangler.toml). To ship another
// script, put it beside policy.lua, import it here and add it to the map.

import policy from "./policy.lua";

export const bundledLuaScripts: Readonly<Record<string, string>> = {
  "policy.lua": policy,
};
