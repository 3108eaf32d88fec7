#!/usr/bin/env node
// Fails the lint when code in shared/ or relay/src/ calls slice() on a byte
// array. A Node Buffer is a Uint8Array whose slice() is a view, not a copy,
// so a "copy" made that way shares memory with whatever it came from (issue
// 15: every asker's ID written into one cached answer). Copy with copyBytes
// (shared/dns/bytes.ts); take part of a message with subarray.
//
// Type-aware: it asks the TypeScript checker for the receiver's type, so
// arrays and strings keep their slice(). Arguments: a tsconfig and the
// folders to check (default: the repo's tsconfig.json, shared/ and relay/src/).
import { dirname, relative, resolve } from "node:path";
import ts from "typescript";

const repo = new URL("../../", import.meta.url).pathname;
const [configArg, ...folderArgs] = process.argv.slice(2);
const configPath = resolve(configArg ?? `${repo}tsconfig.json`);
const folders = (folderArgs.length > 0 ? folderArgs : [`${repo}shared`, `${repo}relay/src`]).map(
  (f) => `${resolve(f)}/`,
);

const read = ts.readConfigFile(configPath, ts.sys.readFile);
if (read.error) throw new Error(ts.flattenDiagnosticMessageText(read.error.messageText, "\n"));
const parsed = ts.parseJsonConfigFileContent(read.config, ts.sys, dirname(configPath));
const inFolders = (name) => folders.some((f) => name.startsWith(f));
const program = ts.createProgram(parsed.fileNames.filter(inFolders), parsed.options);
const checker = program.getTypeChecker();

const BYTE_TYPES = new Set(["Uint8Array", "Buffer"]);

/** Whether `type` (or any member of a union) is a Uint8Array or a Buffer. */
function isBytes(type) {
  if (type.isUnion()) return type.types.some(isBytes);
  const symbol = checker.getApparentType(type).getSymbol();
  return symbol !== undefined && BYTE_TYPES.has(symbol.getName());
}

const problems = [];
for (const file of program.getSourceFiles()) {
  if (!inFolders(file.fileName)) continue;
  const visit = (node) => {
    if (
      ts.isCallExpression(node) &&
      ts.isPropertyAccessExpression(node.expression) &&
      node.expression.name.text === "slice" &&
      isBytes(checker.getTypeAtLocation(node.expression.expression))
    ) {
      const { line } = file.getLineAndCharacterOfPosition(node.getStart(file));
      problems.push(`${relative(process.cwd(), file.fileName)}:${line + 1}: ${node.getText(file)}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
}

if (problems.length > 0) {
  for (const p of problems) console.error(p);
  console.error(
    `slice() on a byte array is a view, not a copy, when the bytes are a Node Buffer: use copyBytes (shared/dns/bytes.ts) or subarray. ${problems.length} problem(s)`,
  );
  process.exit(1);
}
console.log("byte copies: ok");
