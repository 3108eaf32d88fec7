// BalanceDNS's plugin contract, both directions:
//   in:  {"question":{"domain":"example.org.","type":"A","qtype":1}}
//   out: {"action":"FORWARD"} | {"action":"BLOCK"}
//        | {"action":"REWRITE","rewrite_domain":"x.org.","rewrite_type":"AAAA"}
//        | {"action":"LOCAL_DATA","local_data":{"ttl":60,"ip":"1.2.3.4","ips":["::1"]}}
// Output is untrusted: anything else is a PluginOutputError naming the problem.

import { rrTypeFromName, rrTypeName } from "../dns/codes.ts";
import { DohEdgeError } from "../errors.ts";
import type { Decision } from "./rules.ts";

export class PluginOutputError extends DohEdgeError {
  override readonly name = "PluginOutputError";
  readonly code = "bad_output";
}

export interface PluginInput {
  question: { domain: string; type: string; qtype: number };
}

export function pluginInput(name: string, qtype: number): PluginInput {
  const domain = name.endsWith(".") ? name : `${name}.`;
  return { question: { domain, type: rrTypeName(qtype), qtype } };
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const IPV6 = /^[0-9a-f:.]+$/i;
const NAME =
  /^([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.?$/i;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const fail = (why: string) => new PluginOutputError(why);

/** What a failed plugin decides, per plugins.on_error. */
export function onErrorDecision(
  onError: "forward" | "block" | "servfail",
): Decision | { action: "servfail" } {
  if (onError === "block") return { action: "block", with: "nxdomain", source: "rule" };
  if (onError === "servfail") return { action: "servfail" };
  return { action: "pass" };
}

/** The decision a plugin's parsed JSON output stands for. */
export function decisionFromPluginOutput(output: unknown): Decision | PluginOutputError {
  if (!isObject(output)) return fail("output is not a JSON object");
  const action = output.action;
  if (typeof action !== "string") return fail("action is missing or not a string");
  switch (action.toUpperCase()) {
    case "FORWARD":
      return { action: "pass" };
    case "BLOCK":
      return { action: "block", with: "nxdomain", source: "rule" };
    case "REWRITE": {
      const domain = output.rewrite_domain;
      const type = output.rewrite_type;
      if (domain !== undefined && (typeof domain !== "string" || !NAME.test(domain))) {
        return fail("rewrite_domain is not a domain name");
      }
      let qtype: string | undefined;
      if (typeof type === "number" && Number.isInteger(type) && type > 0 && type < 65536) {
        qtype = rrTypeName(type);
      } else if (typeof type === "string" && rrTypeFromName(type) !== undefined) {
        qtype = type.toUpperCase();
      } else if (type !== undefined) {
        return fail("rewrite_type is not a DNS type");
      }
      if (domain === undefined && qtype === undefined)
        return fail("REWRITE needs rewrite_domain or rewrite_type");
      return { action: "rewrite", name: domain as string | undefined, qtype };
    }
    case "LOCAL_DATA": {
      const data = output.local_data;
      if (!isObject(data)) return fail("LOCAL_DATA needs a local_data object");
      const ips: string[] = [];
      if (data.ip !== undefined) ips.push(data.ip as string);
      if (data.ips !== undefined) {
        if (!Array.isArray(data.ips)) return fail("local_data.ips is not a list");
        ips.push(...(data.ips as string[]));
      }
      if (ips.length === 0 || ips.length > 64) return fail("local_data needs 1 to 64 addresses");
      for (const ip of ips) {
        if (typeof ip !== "string" || !(IPV4.test(ip) || (ip.includes(":") && IPV6.test(ip)))) {
          return fail(`local_data address ${JSON.stringify(ip)} is not an IP address`);
        }
      }
      const ttl = data.ttl ?? 60;
      if (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl < 0 || ttl > 2_147_483_647) {
        return fail("local_data.ttl is not a whole number of seconds");
      }
      return { action: "local_data", ips, txt: [], ttl };
    }
    default:
      return fail(`unknown action ${JSON.stringify(action).slice(0, 40)}`);
  }
}
