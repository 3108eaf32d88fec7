// The relay's `bootstrap` servers (plain DNS that resolves upstream host
// names) and `ecs`, the client subnet sent on those queries.

import * as z from "zod";
import { type Cidr, parseCidr } from "../../ip.ts";
import { type HostPort, parseHostPort } from "../../upstream-url.ts";
import { isTypedError } from "../errors.ts";
import { parsedString, UrlError } from "../fields.ts";
import type { Checker } from "../parse.ts";

export const bootstrapSchema = z
  .array(
    parsedString((text) => {
      const address = parseHostPort(text, { defaultPort: 53 });
      if (address.hostKind === "name") {
        throw new UrlError(`${JSON.stringify(text)}: a bootstrap server must be an IP address`);
      }
      return address;
    }, 'an address such as "9.9.9.9" or "[2620:fe::fe]:53"'),
  )
  .default(() => []);

export const ecsSchema = z
  .union([z.boolean(), z.string()], {
    error: 'expected true, false or a CIDR block such as "203.0.113.0/24"',
  })
  .optional();

/** `ecs: true` → "auto", a CIDR string → that block; it needs bootstrap servers. */
export function finalizeEcs(
  raw: boolean | string | undefined,
  bootstrap: readonly HostPort[],
  check: Checker,
): "auto" | Cidr | undefined {
  let ecs: "auto" | Cidr | undefined;
  if (raw === true) ecs = "auto";
  else if (typeof raw === "string") {
    try {
      ecs = parseCidr(raw);
    } catch (error) {
      if (!isTypedError(error)) throw error;
      check.error(["ecs"], error.message);
    }
  }
  if (ecs !== undefined && bootstrap.length === 0) {
    check.error(["ecs"], "applies to bootstrap queries only, so it needs bootstrap servers");
  }
  return ecs;
}
