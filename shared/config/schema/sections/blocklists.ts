// `blocklists`: text or compiled lists from a file (relay), an http(s) URL
// (both), or the worker's static assets.

import * as z from "zod";
import { absoluteUrlPath, httpUrl, nonEmpty, parsedString } from "../fields.ts";
import type { Checker } from "../parse.ts";

/**
 * A block list, text or compiled: a file (relay only), an http(s) URL, or a
 * path among the worker's static assets (worker only, its ASSETS binding).
 */
export type BlocklistConfig = { path: string } | { url: string } | { asset: string };

export const blocklistSchema = z.strictObject({
  path: nonEmpty.optional(),
  url: parsedString((text) => httpUrl(text).href, "an http(s) URL").optional(),
  asset: absoluteUrlPath.optional(),
});

export function finalizeBlocklists(
  raw: z.output<typeof blocklistSchema>[],
  check: Checker,
): BlocklistConfig[] {
  const blocklists: BlocklistConfig[] = [];
  raw.forEach((list, i) => {
    const at = ["blocklists", i];
    const given = [list.path, list.url, list.asset].filter((v) => v !== undefined).length;
    if (given !== 1) {
      check.error(at, "needs one of path, url or asset");
    } else if (list.path !== undefined) {
      if (check.runtime === "worker") {
        check.error(
          [...at, "path"],
          "the edge worker reads no files; give the list as a url or a static asset",
        );
      }
      blocklists.push({ path: list.path });
    } else if (list.url !== undefined) {
      blocklists.push({ url: list.url });
    } else if (list.asset !== undefined) {
      if (check.runtime === "relay") {
        check.error(
          [...at, "asset"],
          "a static asset is the worker's (its ASSETS binding); on the relay give the file as path",
        );
      }
      blocklists.push({ asset: list.asset });
    }
  });
  return blocklists;
}
