// The Lua bench worker (lua-worker-entry.ts) imports its scripts as text,
// by wrangler.toml's Text rule, as the worker imports its policy scripts.
declare module "*.lua" {
  const text: string;
  export default text;
}
