// Zod's issues as our one-line problems: messages for its built-in checks,
// paths cut back to what the user wrote, and unknown keys with a hint
// (another system's name for the key, or its snake_case spelling).

import type * as z from "zod";
import { type ConfigPathSegment, type ConfigProblem, describe } from "./errors.ts";

/** A runtime's own message for an unknown key at `path`, or undefined for the generic one. */
export type KeyHint = (path: readonly ConfigPathSegment[], key: string) => string | undefined;

const EXPECTED: Readonly<Record<string, string>> = {
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "true or false",
  array: "a list",
  object: "a mapping",
};

/** Messages for zod's built-in issues (schema-level messages take precedence). */
export function builtInMessage(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case "invalid_type":
      if (issue.input === undefined) return "required";
      return `expected ${EXPECTED[issue.expected] ?? issue.expected}, got ${describe(issue.input)}`;
    case "too_small":
      return issue.origin === "array"
        ? `needs at least ${issue.minimum} item${issue.minimum === 1 ? "" : "s"}`
        : `must be at least ${issue.minimum}`;
    case "too_big":
      return issue.origin === "array"
        ? `takes at most ${issue.maximum} item${issue.maximum === 1 ? "" : "s"}`
        : `must be at most ${issue.maximum}`;
    case "invalid_value":
      return `expected ${issue.values.map((v) => String(v)).join(", ")}; got ${describe(issue.input)}`;
    case "invalid_union":
      return `unexpected value ${describe(issue.input)}`;
    default:
      return undefined;
  }
}

/** Names other systems use (fanout, CoreDNS proxy) for our keys. */
const KEY_ALIASES: Readonly<Record<string, string>> = {
  weighted_random_server_count: "server_count",
  weighted_random_load_factor: "weight (on each upstream)",
  tls_server: "tls_servername",
  max_fails: "attempt_count",
  network: "a tcp:// or udp:// url",
  fallthrough: "except",
};

function unknownKeyMessage(key: string, knownKeys: () => ReadonlySet<string>): string {
  const snake = key.toLowerCase().replaceAll("-", "_");
  const alias = KEY_ALIASES[snake];
  if (alias !== undefined) return `unknown key; use ${alias}`;
  if (snake !== key && knownKeys().has(snake)) return `unknown key; keys are snake_case: ${snake}`;
  return "unknown key";
}

/**
 * Zod paths may run into a value that was a string in the input and a
 * mapping or list only after preprocessing (`udp: 127.0.0.1:53` →
 * `{ addr }`); cut such paths back to what the user wrote.
 */
function pathInInput(path: readonly PropertyKey[], input: unknown): ConfigPathSegment[] {
  const out: ConfigPathSegment[] = [];
  let value = input;
  for (const segment of path) {
    if (value === null || typeof value !== "object") break;
    const key = typeof segment === "symbol" ? String(segment) : segment;
    out.push(key);
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return out;
}

export interface IssueContext {
  readonly input: unknown;
  readonly keyHint: KeyHint;
  /** Every key the schema knows; asked only when an unknown key needs a hint. */
  readonly knownKeys: () => ReadonlySet<string>;
}

export function problemsFromIssues(
  issues: readonly z.core.$ZodIssue[],
  context: IssueContext,
): ConfigProblem[] {
  const { input, keyHint, knownKeys } = context;
  const problems: ConfigProblem[] = [];
  for (const issue of issues) {
    const path = pathInInput(issue.path, input);
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        const message = keyHint(path, key) ?? unknownKeyMessage(key, knownKeys);
        problems.push({ path: [...path, key], message });
      }
    } else if (issue.path.length === 0 && issue.code === "invalid_type") {
      problems.push({
        path,
        message: `the config must be a mapping of settings, got ${describe(input)}`,
      });
    } else {
      problems.push({ path, message: issue.message });
    }
  }
  return problems;
}
