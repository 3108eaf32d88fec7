// Domain names in config (zones, except lists, rules) and the suffix walk
// every name set uses (shared/policy/suffix-set.ts) on label boundaries: "corp.example." covers "corp.example." and
// "a.corp.example." but not "xcorp.example.". Case-insensitive; the trailing
// dot is optional on both sides. A lookup walks the query name's suffixes, so
// it costs one Set probe per label whatever the size of the list.

import { DohEdgeError } from "../errors.ts";

export class DomainNameError extends DohEdgeError {
  override readonly name = "DomainNameError";
  readonly code = "bad_domain_name";
}

export class ExceptFileError extends DohEdgeError {
  override readonly name = "ExceptFileError";
  readonly code = "bad_except_file";
  readonly file: string;
  readonly line: number;
  constructor(file: string, line: number, message: string) {
    super(`${file}:${line}: ${message}`);
    this.file = file;
    this.line = line;
  }
}

export interface NameMatcher {
  /** Whether the name is one of the set's names or below one of them. */
  matches(qname: string): boolean;
}

const LABEL = /^[a-z0-9_-]{1,63}$/;

/** Lower case with exactly one trailing dot ("" and "." are the root). No validation. */
export function canonicalName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith(".") ? lower : `${lower}.`;
}

/** Why the text is not a config domain name, or undefined when it is one. */
function domainNameProblem(text: string): string | undefined {
  if (text === ".") return undefined;
  if (text === "") return "empty name";
  if (text.includes("*"))
    return "wildcards (*) are not supported; a name already covers its subdomains";
  if (/[^\x21-\x7e]/.test(text)) {
    return /[\s]/.test(text)
      ? "contains whitespace"
      : "contains non-ASCII characters; write internationalized names in their xn-- form";
  }
  const bare = text.endsWith(".") ? text.slice(0, -1) : text;
  if (bare.length > 253) return "longer than 253 characters";
  for (const label of bare.toLowerCase().split(".")) {
    if (label === "") return "empty label (two dots in a row, or a leading dot)";
    if (label.length > 63) return `label "${label.slice(0, 20)}..." is longer than 63 characters`;
    if (!LABEL.test(label)) {
      return `label "${label}" may hold only letters, digits, "-" and "_"`;
    }
  }
  return undefined;
}

/** Validates a domain name and returns it lower-cased with a trailing dot. */
export function normalizeDomainName(text: string): string {
  if (typeof text !== "string") {
    throw new DomainNameError(`expected a domain name, got ${typeof text}`);
  }
  const problem = domainNameProblem(text);
  if (problem !== undefined) {
    throw new DomainNameError(`${JSON.stringify(text)} is not a domain name: ${problem}`);
  }
  return canonicalName(text);
}

/** The normalized name, or undefined when the text is not a domain name. */
export function tryNormalizeDomainName(text: string): string | undefined {
  return typeof text === "string" && domainNameProblem(text) === undefined
    ? canonicalName(text)
    : undefined;
}

/**
 * Where the label after the one starting at `at` begins, skipping escaped
 * dots ("a\.b" is one label); `name.length` when `at` starts the last label.
 */
export function nextLabel(name: string, at: number): number {
  for (let i = at; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x5c /* \ */) i++;
    else if (c === 0x2e /* . */) return i + 1;
  }
  return name.length;
}

/** Labels in a canonical name ("." has none). */
export function labelCount(name: string): number {
  if (name === ".") return 0;
  let labels = 0;
  for (let at = 0; at < name.length; at = nextLabel(name, at)) labels++;
  return labels;
}

/**
 * Calls `visit` with the canonical name, then each parent, ending with ".";
 * stops early and returns true when `visit` returns true. With `maxLabels`,
 * suffixes longer than that many labels are skipped (nothing to find there).
 */
export function someSuffix(
  qname: string,
  visit: (suffix: string) => boolean,
  maxLabels = Number.POSITIVE_INFINITY,
): boolean {
  const name = canonicalName(qname);
  if (name === ".") return visit(".");
  let at = 0;
  if (maxLabels !== Number.POSITIVE_INFINITY) {
    for (let skip = labelCount(name) - maxLabels; skip > 0; skip--) at = nextLabel(name, at);
  }
  for (; at < name.length; at = nextLabel(name, at)) {
    if (visit(name.slice(at))) return true;
  }
  return visit(".");
}

/**
 * Reads an except file: one domain per line; "#" starts a comment (whole
 * line or trailing); blank lines and CRLF line ends are fine. Returns the
 * names normalized; throws ExceptFileError with file and line on a bad line.
 */
export function parseExceptFile(text: string, fileName: string): string[] {
  const names: string[] = [];
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  lines.forEach((raw, i) => {
    const hash = raw.indexOf("#");
    const line = (hash === -1 ? raw : raw.slice(0, hash)).trim();
    if (line === "") return;
    const name = tryNormalizeDomainName(line);
    if (name === undefined) {
      throw new ExceptFileError(fileName, i + 1, `not a domain name: ${JSON.stringify(line)}`);
    }
    names.push(name);
  });
  return names;
}
