// Injected randomness: a seeded generator for tests, crypto for production.

export interface Random {
  /** A uniformly distributed number in [0, 1). */
  next(): number;
}

/** mulberry32: small, fast, good enough for load spreading; same seed, same sequence. */
export function createSeededRandom(seed: number): Random {
  let state = seed >>> 0;
  return {
    next() {
      state = (state + 0x6d2b79f5) >>> 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 0x100000000;
    },
  };
}

/** crypto.getRandomValues, drawn 64 values at a time. */
export function createCryptoRandom(): Random {
  const buffer = new Uint32Array(64);
  let index = buffer.length;
  return {
    next() {
      if (index === buffer.length) {
        crypto.getRandomValues(buffer);
        index = 0;
      }
      return buffer[index++]! / 0x100000000;
    },
  };
}

/** An integer in [0, n). */
export function randomIndex(random: Random, n: number): number {
  return Math.min(n - 1, Math.floor(random.next() * n));
}

/** Fisher-Yates shuffle into a new array. */
export function shuffled<T>(items: readonly T[], random: Random): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = randomIndex(random, i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
