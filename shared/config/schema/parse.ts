// The two passes every config goes through: the zod schema (types, ranges,
// defaults, durations in ms) and then the runtime's final checks across
// sections, which report through a Checker so that every problem is listed.

import type * as z from "zod";
import {
  ConfigError,
  type ConfigPathSegment,
  type ConfigProblem,
  formatProblem,
} from "./errors.ts";
import { collectKeys } from "./known-keys.ts";
import { builtInMessage, type KeyHint, problemsFromIssues } from "./messages.ts";

export type Runtime = "relay" | "worker";

export interface ParsedConfig<T> {
  config: T;
  /** One line each, "path: message". */
  warnings: string[];
}

/** Collects the final checks' problems and warnings. */
export interface Checker {
  readonly runtime: Runtime;
  readonly problems: ConfigProblem[];
  readonly warnings: ConfigProblem[];
  error(path: readonly ConfigPathSegment[], message: string): void;
  warn(path: readonly ConfigPathSegment[], message: string): void;
}

export function createChecker(runtime: Runtime): Checker {
  const problems: ConfigProblem[] = [];
  const warnings: ConfigProblem[] = [];
  return {
    runtime,
    problems,
    warnings,
    error: (path, message) => problems.push({ path, message }),
    warn: (path, message) => warnings.push({ path, message }),
  };
}

export interface ConfigParser<S extends z.ZodType, T> {
  readonly runtime: Runtime;
  readonly schema: S;
  readonly keyHint: KeyHint;
  /** Keys the schema does not take but a user may mean (the other runtime's top-level keys). */
  readonly otherKeys: readonly string[];
  finalize(raw: z.output<S>, check: Checker): T;
}

/** Runs both passes; throws ConfigError listing every problem of the first failing pass. */
export function parseWith<S extends z.ZodType, T>(
  parser: ConfigParser<S, T>,
  input: unknown,
): ParsedConfig<T> {
  const { runtime, schema, keyHint, otherKeys } = parser;
  const result = schema.safeParse(input, { error: builtInMessage });
  if (!result.success) {
    const knownKeys = () => new Set([...collectKeys(schema), ...otherKeys]);
    throw new ConfigError(problemsFromIssues(result.error.issues, { input, keyHint, knownKeys }));
  }
  const check = createChecker(runtime);
  const config = parser.finalize(result.data, check);
  if (check.problems.length > 0) throw new ConfigError(check.problems);
  return { config, warnings: check.warnings.map(formatProblem) };
}
