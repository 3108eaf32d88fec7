// The relay's own error classes share the DohEdgeError base with shared/'s
// (test/shared/errors.test.ts): named after the class, with a stable code.

import { describe, expect, it } from "vitest";
import { ResolvConfError } from "../../relay/src/config/load-config.ts";
import { PluginError } from "../../relay/src/exec-plugin.ts";
import { BootstrapError } from "../../relay/src/transports/bootstrap.ts";
import { DohEdgeError } from "../../shared/errors.ts";

describe("relay errors", () => {
  it.each([
    ["BootstrapError", new BootstrapError("x"), "bootstrap_failed"],
    ["PluginError", new PluginError("crash", "x"), "crash"],
    ["ResolvConfError", new ResolvConfError("x"), "bad_resolv_conf"],
  ] as const)("%s is a DohEdgeError named after its class, with its code", (name, error, code) => {
    expect(error).toBeInstanceOf(DohEdgeError);
    expect(error).toMatchObject({ name, code });
  });
});
