// The README's config examples must be valid configs: every ```yaml block
// is a relay config and every ```json block a worker DOH_CONFIG. So are the
// example files it points at.

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { parseRelayConfig, parseWorkerConfig } from "../shared/config/schema.ts";

const read = (path: string) => readFileSync(new URL(path, import.meta.url), "utf8");
const readme = read("../README.md");

function blocks(language: string): string[] {
  const pattern = new RegExp(`\`\`\`${language}\\n([\\s\\S]*?)\`\`\``, "g");
  return [...readme.matchAll(pattern)].map((m) => m[1] ?? "");
}

describe("README examples", () => {
  it("has config examples to check", () => {
    expect(blocks("yaml").length).toBeGreaterThan(0);
    expect(blocks("json").length).toBeGreaterThan(0);
  });

  it.each(blocks("yaml").map((text, i) => ({ i, text })))(
    "yaml block $i is a valid relay config",
    ({ text }) => {
      expect(() => parseRelayConfig(parseYaml(text))).not.toThrow();
    },
  );

  it.each(blocks("json").map((text, i) => ({ i, text })))(
    "json block $i is a valid worker config",
    ({ text }) => {
      expect(() => parseWorkerConfig(JSON.parse(text))).not.toThrow();
    },
  );

  it.each(["../relay/relay.example.yaml", "../relay/relay.start.yaml"])(
    "%s is a valid relay config",
    (path) => {
      expect(() => parseRelayConfig(parseYaml(read(path)))).not.toThrow();
    },
  );
});
