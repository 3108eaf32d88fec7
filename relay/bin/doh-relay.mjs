#!/usr/bin/env node
// The relay CLI. Node >= 22.18 runs the TypeScript entry directly (type stripping).
import { main } from "../src/cli.ts";

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 200).unref();
});
