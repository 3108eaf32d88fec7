// The top-level keys only one runtime takes. The other runtime names them in
// its refusal ("relay-only setting"), so it needs the names without loading
// their schemas; relay.ts and worker.ts check their shapes against these lists.

export const RELAY_ONLY_KEYS = [
  "listen",
  "workers",
  "allow",
  "rate_limit",
  "bootstrap",
  "ecs",
  "control",
  "metrics",
] as const;

export const WORKER_ONLY_KEYS = ["relays"] as const;
