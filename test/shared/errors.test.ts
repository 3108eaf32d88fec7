// Every error doh-edge throws on purpose shares one base, DohEdgeError,
// named after its class and carrying a stable string code; thrown for real
// by the code that throws it where that is a one-liner.

import { describe, expect, it } from "vitest";
import { DurationError, parseDuration } from "../../shared/config/duration.ts";
import { DomainNameError, ExceptFileError } from "../../shared/config/except.ts";
import { CidrError, IpAddressError } from "../../shared/config/ip.ts";
import { ConfigError } from "../../shared/config/schema/errors.ts";
import { UrlError } from "../../shared/config/schema/fields.ts";
import { HostPortError, UpstreamUrlError } from "../../shared/config/upstream-url.ts";
import { NameSyntaxError } from "../../shared/dns/query.ts";
import { DnsWireError } from "../../shared/dns/wire-error.ts";
import { EngineConfigError, UpstreamError } from "../../shared/engine/errors.ts";
import { DohEdgeError } from "../../shared/errors.ts";
import { CompiledListError } from "../../shared/policy/compiled-list.ts";
import { PluginOutputError } from "../../shared/policy/plugin-output.ts";

const made: [string, DohEdgeError, string][] = [
  ["ConfigError", new ConfigError([{ path: ["a"], message: "x" }]), "invalid_config"],
  ["UrlError", new UrlError("x"), "bad_url"],
  ["DurationError", new DurationError("x"), "bad_duration"],
  ["DomainNameError", new DomainNameError("x"), "bad_domain_name"],
  ["ExceptFileError", new ExceptFileError("zones.txt", 3, "x"), "bad_except_file"],
  ["IpAddressError", new IpAddressError("x"), "bad_ip"],
  ["CidrError", new CidrError("x"), "bad_cidr"],
  ["UpstreamUrlError", new UpstreamUrlError("bad_port", "x"), "bad_port"],
  ["HostPortError", new HostPortError("x"), "bad_address"],
  ["NameSyntaxError", new NameSyntaxError("x"), "bad_name"],
  ["DnsWireError", new DnsWireError("short_message", "x"), "short_message"],
  ["UpstreamError", new UpstreamError("timeout", "up"), "timeout"],
  ["EngineConfigError", new EngineConfigError("x"), "bad_option"],
  ["CompiledListError", new CompiledListError("x"), "bad_compiled_list"],
  ["PluginOutputError", new PluginOutputError("x"), "bad_output"],
];

describe("DohEdgeError", () => {
  it.each(made)(
    "%s is a DohEdgeError named after its class, with its code",
    (name, error, code) => {
      expect(error).toBeInstanceOf(DohEdgeError);
      expect(error).toBeInstanceOf(Error);
      expect(error.name).toBe(name);
      expect(error.code).toBe(code);
      expect(String(error)).toBe(`${name}: ${error.message}`);
    },
  );

  it("is what a parser really throws", () => {
    const error = (() => {
      try {
        parseDuration("ten seconds");
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(DohEdgeError);
    expect(error).toMatchObject({ name: "DurationError", code: "bad_duration" });
  });
});
