// The one shape every way of reaching DNS answers satisfies: a transport, a
// pool, a selector and a race. They nest like undici's Dispatchers.

export interface Upstream {
  /** Stable name: health, counters and logs are keyed by it. */
  readonly name: string;
  /**
   * Sends one DNS message and resolves with the response bytes. Rejects with
   * an UpstreamError (see errors.ts); rejects promptly once `signal` aborts.
   */
  query(message: Uint8Array, signal: AbortSignal): Promise<Uint8Array>;
  /** Releases connections and timers. Queries after close reject with `closed`. */
  close(): Promise<void>;
}
