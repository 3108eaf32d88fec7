-- The worker's Lua policy, BalanceDNS's contract. It runs only when the
-- config names it: DOH_CONFIG "plugins": { "entries": [{ "name": "policy",
-- "runtime": "lua", "path": "policy.lua" }] }. Edit it and redeploy
-- (`npx wrangler deploy`); the relay runs the same file unchanged
-- (plugins.entries[] with runtime: lua and its path).
--
--   question: { domain = "example.org.", type = "A", qtype = 1 }
--   return:   { action = "FORWARD" } (or nil)
--           | { action = "BLOCK" }
--           | { action = "REWRITE", rewrite_domain = "other.example.", rewrite_type = "AAAA" }
--           | { action = "LOCAL_DATA", local_data = { ttl = 60, ip = "192.0.2.1", ips = { "::1" } } }

function handle(question)
  return { action = "FORWARD" }
end
