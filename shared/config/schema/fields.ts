// Field schemas both runtimes' sections are built from: strings run through
// our own parsers (durations, names, URLs, IPs, query types), bounded
// integers and identifiers, each with the one-line message a user sees.

import * as z from "zod";
import { rrTypeFromName } from "../../dns/codes.ts";
import { DohEdgeError } from "../../errors.ts";
import { parseDuration } from "../duration.ts";
import { DomainNameError, normalizeDomainName } from "../except.ts";
import { formatIp, parseIp } from "../ip.ts";
import { parseUpstreamUrl } from "../upstream-url.ts";
import { describe, isTypedError } from "./errors.ts";

/** A zod transform through one of our parsers: its typed errors become issues. */
function issuesFrom<I, T>(parse: (input: I) => T) {
  return (input: I, ctx: z.core.$RefinementCtx<I>): T => {
    try {
      return parse(input);
    } catch (error) {
      if (!isTypedError(error)) throw error;
      ctx.issues.push({ code: "custom", message: error.message, input });
      return z.NEVER;
    }
  };
}

/** A string parsed by one of our parsers; their typed errors become issues. */
export function parsedString<T>(parse: (text: string) => T, what: string) {
  return z
    .string({
      error: (issue) =>
        issue.input === undefined ? undefined : `expected ${what}, got ${describe(issue.input)}`,
    })
    .transform(issuesFrom(parse));
}

export const duration = parsedString(parseDuration, 'a duration string such as "5s"');
export const positiveDuration = duration.refine((ms) => ms > 0, "must be longer than 0s");
export const ttlDuration = duration.refine(
  (ms) => ms % 1000 === 0,
  "must be a whole number of seconds (it becomes a DNS TTL)",
);
export const domainName = parsedString(normalizeDomainName, "a domain name");
export const upstreamUrl = parsedString(parseUpstreamUrl, "an upstream URL");

export const intIn = (min: number, max: number) =>
  z
    .int()
    .min(min, `must be between ${min} and ${max}`)
    .max(max, `must be between ${min} and ${max}`);
export const intFrom = (min: number) => z.int().min(min, `must be at least ${min}`);
export const nonEmpty = z.string().min(1, "must not be empty");
export const port = intIn(1, 65535);
export const absoluteUrlPath = z.string().startsWith("/", 'must start with "/"');

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
export const identifier = (what: string) =>
  z
    .string()
    .regex(
      NAME_PATTERN,
      `${what} may hold only letters, digits, ".", "_" and "-" (at most 63, starting with a letter or digit)`,
    );
export const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an environment/binding name (letters, digits, _)");

/** A single value or a list of them; normalized to a list. */
export const oneOrMany = <T extends z.ZodType>(item: T, what: string) =>
  z.preprocess(
    (value) => (typeof value === "string" || typeof value === "number" ? [value] : value),
    z.array(item, {
      error: (issue) =>
        issue.code === "invalid_type" && issue.input !== undefined
          ? `expected ${what} or a list of them, got ${describe(issue.input)}`
          : undefined,
    }),
  );

class QtypeError extends DohEdgeError {
  override readonly name = "QtypeError";
  readonly code = "bad_qtype";
}

/** "AAAA", "TYPE65" or 28 → the query type number; throws QtypeError. */
export function parseQtype(value: string | number): number {
  if (typeof value === "number") {
    if (Number.isInteger(value) && value >= 1 && value <= 65535) return value;
    throw new QtypeError(`query type ${value} is out of range 1-65535`);
  }
  const known = rrTypeFromName(value);
  if (known !== undefined && known >= 1) return known;
  throw new QtypeError(
    `unknown query type ${JSON.stringify(value)} (use e.g. A, AAAA, TXT or TYPE65)`,
  );
}

export const qtype = z
  .union([z.string(), z.number()], { error: 'expected a query type such as "AAAA"' })
  .transform(issuesFrom(parseQtype));

export const ipText = parsedString((text) => formatIp(parseIp(text)), "an IP address");
export const hostName = parsedString((text) => {
  const name = normalizeDomainName(text);
  if (name === ".") throw new DomainNameError("must be a host name, not the root");
  return name.slice(0, -1);
}, "a host name");

export class UrlError extends DohEdgeError {
  override readonly name = "UrlError";
  readonly code = "bad_url";
}

/** An absolute http(s) URL without user info or fragment; throws UrlError. */
export function httpUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UrlError(`${JSON.stringify(text)} is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new UrlError(`${text}: expected an https:// or http:// URL`);
  }
  if (url.username !== "" || url.password !== "") {
    throw new UrlError(`${text}: user info (user@host) is not supported`);
  }
  if (url.hash !== "") throw new UrlError(`${text}: a fragment (#...) is not allowed`);
  return url;
}
