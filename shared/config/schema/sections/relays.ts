// The worker's `relays`: relay origin endpoints that upstreams name with `via`.

import * as z from "zod";
import { isPrivateHost } from "../../upstream-url.ts";
import { envName, httpUrl, identifier, parsedString } from "../fields.ts";
import type { Checker } from "../parse.ts";

export interface RelayEndpointConfig {
  name: string;
  /** Base URL of the relay's origin endpoint, ending in "/": POST <url>origin/<upstream>. */
  url: string;
  /** Name of the Worker secret holding the bearer token (default "RELAY_TOKEN"). */
  token_secret: string;
}

export const relaysSchema = z
  .array(
    z.strictObject({
      name: identifier("relay names"),
      url: parsedString(httpUrl, "the relay's https:// URL"),
      token_secret: envName.default("RELAY_TOKEN"),
    }),
  )
  .default(() => []);

export function finalizeRelays(
  raw: z.output<typeof relaysSchema>,
  check: Checker,
): RelayEndpointConfig[] {
  const names = new Set<string>();
  return raw.map((relay, i) => {
    if (names.has(relay.name))
      check.error(["relays", i, "name"], `duplicate relay name "${relay.name}"`);
    names.add(relay.name);
    const url = new URL(relay.url.href);
    if (url.search !== "") check.error(["relays", i, "url"], "a relay URL takes no query string");
    if (!url.pathname.endsWith("/")) url.pathname = `${url.pathname}/`;
    const bracketed = url.hostname.startsWith("[");
    const host = bracketed ? url.hostname.slice(1, -1) : url.hostname;
    const kind = bracketed ? "ipv6" : /^[\d.]+$/.test(host) ? "ipv4" : "name";
    if (url.protocol === "http:" && !isPrivateHost(host, kind)) {
      check.warn(
        ["relays", i, "url"],
        "http:// sends the relay token and queries unencrypted to a public host; use https://",
      );
    }
    return { name: relay.name, url: url.href, token_secret: relay.token_secret };
  });
}
