#!/usr/bin/env node
// Fails when a source file in edge-worker/, relay/ or shared/ is longer than
// 500 lines or a function in one is longer than 80 (the project's limits:
// small files with one idea each, functions that fit on a screen). A
// function's lines run from its first line to its last, nested functions
// included, as they are read. Arguments: folders or files to check
// (default: the repo's edge-worker/, relay/ and shared/).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import ts from "typescript";

const MAX_FILE_LINES = 500;
const MAX_FUNCTION_LINES = 80;

const repo = new URL("../../", import.meta.url).pathname;
const folders =
  process.argv.length > 2
    ? process.argv.slice(2)
    : ["edge-worker", "relay", "shared"].map((f) => join(repo, f));

function* sourceFiles(dir) {
  if (!statSync(dir).isDirectory()) {
    yield dir;
    return;
  }
  for (const entry of readdirSync(dir)) {
    if (entry === "node_modules" || entry.startsWith(".")) continue;
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) yield* sourceFiles(path);
    else if (/\.(ts|mts|js|mjs)$/.test(entry) && !entry.endsWith(".d.ts")) yield path;
  }
}

/**
 * What to call a function in a message: its own name, the name it is bound
 * to, or "(callback in <enclosing function>)".
 */
function nameOf(node, enclosing) {
  if (node.name && ts.isIdentifier(node.name)) return node.name.text;
  if (node.name) return node.name.getText();
  if (ts.isConstructorDeclaration(node)) return "constructor";
  const parent = node.parent;
  if (parent && (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent))) {
    return parent.name.getText();
  }
  return enclosing ? `(callback in ${enclosing})` : "(anonymous)";
}

const isFunction = (node) =>
  ts.isFunctionDeclaration(node) ||
  ts.isFunctionExpression(node) ||
  ts.isArrowFunction(node) ||
  ts.isMethodDeclaration(node) ||
  ts.isConstructorDeclaration(node) ||
  ts.isGetAccessorDeclaration(node) ||
  ts.isSetAccessorDeclaration(node);

/** The problems in one file's text, as "path:line: message" strings. */
function check(path, text) {
  const where = relative(process.cwd(), path);
  const problems = [];
  const lines = text.endsWith("\n") ? text.split("\n").length - 1 : text.split("\n").length;
  if (lines > MAX_FILE_LINES) {
    problems.push(`${where}:1: file has ${lines} lines (limit ${MAX_FILE_LINES})`);
  }
  const file = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true);
  const lineOf = (pos) => file.getLineAndCharacterOfPosition(pos).line + 1;
  const visit = (node, enclosing) => {
    if (!isFunction(node) || !node.body) {
      ts.forEachChild(node, (child) => visit(child, enclosing));
      return;
    }
    const name = nameOf(node, enclosing);
    const first = lineOf(node.getStart(file));
    const count = lineOf(node.end) - first + 1;
    if (count > MAX_FUNCTION_LINES) {
      problems.push(
        `${where}:${first}: function ${name} has ${count} lines (limit ${MAX_FUNCTION_LINES})`,
      );
    }
    ts.forEachChild(node, (child) => visit(child, name));
  };
  visit(file, undefined);
  return problems;
}

const problems = [];
for (const folder of folders) {
  for (const path of sourceFiles(folder)) problems.push(...check(path, readFileSync(path, "utf8")));
}
if (problems.length > 0) {
  for (const p of problems) console.error(p);
  console.error(
    `size limits: ${problems.length} problem(s); split the file or the function (one idea each)`,
  );
  process.exit(1);
}
console.log("size limits: ok");
