// ConfigError and how a problem is written: one line naming the key path
// (`routes[0].upstreams[1]: unknown upstream "quad8"`), plus
// " (and N more problems)" when there are more.

import { DohEdgeError } from "../../errors.ts";

export type ConfigPathSegment = string | number;

export interface ConfigProblem {
  readonly path: readonly ConfigPathSegment[];
  readonly message: string;
}

export class ConfigError extends DohEdgeError {
  override readonly name = "ConfigError";
  readonly code = "invalid_config";
  /** Key path of the first problem, e.g. ["routes", 0, "upstreams", 1]. */
  readonly path: ConfigPathSegment[];
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[]) {
    const [first, ...rest] = problems;
    if (first === undefined) throw new TypeError("ConfigError needs at least one problem");
    const more =
      rest.length === 0 ? "" : ` (and ${rest.length} more problem${rest.length === 1 ? "" : "s"})`;
    super(`${formatProblem(first)}${more}`);
    this.path = [...first.path];
    this.problems = problems;
  }
}

/** `routes[0].upstreams[1]`; keys that are not identifiers are quoted: `a["x y"]`. */
export function formatConfigPath(path: readonly ConfigPathSegment[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(segment)) out += out === "" ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

/** "path: message", or just the message for the top level. */
export function formatProblem(problem: ConfigProblem): string {
  const where = formatConfigPath(problem.path);
  return where === "" ? problem.message : `${where}: ${problem.message}`;
}

/** How a value the user wrote reads in a message: "a list", `"text"`, 5. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") {
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}...` : value);
  }
  return String(value);
}

/** Our parsers' errors (DurationError, CidrError, …) carry a string `code`. */
export function isTypedError(error: unknown): error is Error & { code: string } {
  return error instanceof Error && typeof (error as { code?: unknown }).code === "string";
}
