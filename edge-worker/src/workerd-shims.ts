// Imported first by the worker (and by the workerd test projects' setup):
// fengari, the Lua VM behind Lua policies, loads its debug library's
// JavaScript at import, and that loads readline-sync, which calls
// process.binding("tty_wrap") at import. workerd's process.binding throws
// for every name, so the worker would not start. The debug library is never
// opened in a policy state and nothing reads a terminal: answer that one
// name with an empty binding and leave every other name to workerd.

interface ProcessWithBinding {
  binding?: (name: string) => unknown;
}

const proc = (globalThis as { process?: ProcessWithBinding }).process;
const original = proc?.binding;
if (proc && original) {
  proc.binding = (name: string) => (name === "tty_wrap" ? {} : original.call(proc, name));
}
