// The edge worker's programmable policy, BalanceDNS's contract: edit this
// function and redeploy (`npx wrangler deploy`); it is compiled into the
// bundle. It runs after the config's rules, for names they let through, and
// must answer within 50 ms (otherwise, or if it throws, the query is
// forwarded as usual).
//
//   question: { domain: "example.org.", type: "A", qtype: 1 }
//   return:   { action: "FORWARD" }
//           | { action: "BLOCK" }
//           | { action: "REWRITE", rewrite_domain?: "other.example.", rewrite_type?: "AAAA" }
//           | { action: "LOCAL_DATA", local_data: { ttl?: 60, ip?: "192.0.2.1", ips?: ["::1"] } }

import type { PluginInput } from "../../shared/policy/plugin-output.ts";

export default function handle(_question: PluginInput["question"]): unknown {
  return { action: "FORWARD" };
}
