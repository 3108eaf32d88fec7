// The last N latencies of one upstream, for hedge_delay "auto" (recent p95).

export interface LatencyWindow {
  add(ms: number): void;
  /** Samples held (at most the window size). */
  readonly size: number;
  /** The q-quantile (0..1, nearest rank) of the held samples; undefined when empty. */
  quantile(q: number): number | undefined;
}

export function createLatencyWindow(capacity = 64): LatencyWindow {
  const samples = new Float64Array(capacity);
  let count = 0;
  let next = 0;
  return {
    add(ms) {
      samples[next] = ms;
      next = (next + 1) % capacity;
      if (count < capacity) count++;
    },
    get size() {
      return count;
    },
    quantile(q) {
      if (count === 0) return undefined;
      const sorted = samples.slice(0, count).sort();
      const rank = Math.min(count, Math.max(1, Math.ceil(q * count)));
      return sorted[rank - 1];
    },
  };
}
