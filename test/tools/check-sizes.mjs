#!/usr/bin/env node
// Fails when a file in the checked folders is over 500 lines, a function in
// them (closures included in their enclosing function) spans over 80, or a
// block of 6 or more meaningful lines appears twice (copies that drift).
// Folders: edge-worker/, relay/ and shared/ (issue 18), or the paths given
// as arguments.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import ts from "typescript";

const MAX_FILE_LINES = 500;
const MAX_FUNCTION_LINES = 80;
const REPEAT_LINES = 6;
/** Lines too common to make two blocks copies of each other. */
const trivial = (line) =>
  line === "" ||
  /^[})\];,]*$/.test(line) ||
  line.startsWith("//") ||
  line.startsWith("*") ||
  line.startsWith("/*");
const root = new URL("../../", import.meta.url).pathname;
const folders = process.argv.slice(2);
if (folders.length === 0) folders.push("edge-worker", "relay", "shared");

function* files(path) {
  if (statSync(path).isFile()) {
    if (path.endsWith(".ts") && !path.endsWith(".d.ts")) yield path;
    return;
  }
  for (const entry of readdirSync(path)) yield* files(join(path, entry));
}

const isFunction = (node) =>
  ts.isFunctionDeclaration(node) ||
  ts.isFunctionExpression(node) ||
  ts.isArrowFunction(node) ||
  ts.isMethodDeclaration(node) ||
  ts.isConstructorDeclaration(node) ||
  ts.isGetAccessorDeclaration(node) ||
  ts.isSetAccessorDeclaration(node);

const problems = [];
/** Where each window of REPEAT_LINES meaningful lines was first seen. */
const windows = new Map();

/** Lines (1-based) of import and re-export statements: lists of names, not logic. */
function importLines(source) {
  const lines = new Set();
  for (const statement of source.statements) {
    if (!ts.isImportDeclaration(statement) && !ts.isExportDeclaration(statement)) continue;
    const first = source.getLineAndCharacterOfPosition(statement.getStart(source)).line;
    const last = source.getLineAndCharacterOfPosition(statement.getEnd()).line;
    for (let line = first; line <= last; line++) lines.add(line + 1);
  }
  return lines;
}

function checkRepeats(where, text, source) {
  const skip = importLines(source);
  const lines = text
    .split("\n")
    .map((line, i) => ({ text: line.trim(), at: i + 1 }))
    .filter((line) => !trivial(line.text) && !skip.has(line.at));
  let reportedUntil = -1;
  for (let i = 0; i + REPEAT_LINES <= lines.length; i++) {
    const key = lines
      .slice(i, i + REPEAT_LINES)
      .map((l) => l.text)
      .join("\n");
    const seen = windows.get(key);
    if (!seen) windows.set(key, `${where}:${lines[i].at}`);
    else if (i > reportedUntil) {
      problems.push(`${where}:${lines[i].at}: repeats ${seen} (${REPEAT_LINES}+ lines)`);
      reportedUntil = i + REPEAT_LINES;
    }
  }
}

for (const folder of folders) {
  for (const path of files(resolve(root, folder))) {
    const text = readFileSync(path, "utf8");
    const where = relative(root, path);
    const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
    if (lines > MAX_FILE_LINES) problems.push(`${where}: ${lines} lines (max ${MAX_FILE_LINES})`);
    const source = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true);
    checkRepeats(where, text, source);
    const visit = (node) => {
      if (isFunction(node)) {
        const first = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
        const last = source.getLineAndCharacterOfPosition(node.getEnd()).line;
        const span = last - first + 1;
        if (span > MAX_FUNCTION_LINES) {
          const parent = node.parent;
          const named =
            node.name ??
            (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent)
              ? parent.name
              : undefined);
          const name = named?.getText(source) ?? "(anonymous)";
          problems.push(
            `${where}:${first + 1}: ${name} spans ${span} lines (max ${MAX_FUNCTION_LINES})`,
          );
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
}

if (problems.length > 0) {
  console.error(`sizes:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log("sizes: ok");
