/** What the worker uses of a static-assets binding. */
export interface AssetsBinding {
  fetch(request: Request): Promise<Response>;
}

/** The worker's bindings: the config var and the relay token secrets. */
export interface Env {
  /** The config (README "Configuration"): a JSON object in [vars], or a JSON string. */
  DOH_CONFIG?: unknown;
  /** Default secret for relays' origin endpoints (`wrangler secret put RELAY_TOKEN`). */
  RELAY_TOKEN?: string;
  /** Static assets (`[assets] binding = "ASSETS"` in wrangler.toml): block lists given as `{ asset }`. */
  ASSETS?: AssetsBinding;
  /** Other secrets named by `relays[].token_secret`. */
  [secret: string]: unknown;
}
