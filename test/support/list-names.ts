// Block list names shaped like real lists (issue 16): one to three random
// labels of 3–15 letters under about 1,000 common parent domains, from a
// seeded generator, so runs are repeatable and nothing compresses as well as
// sequential names would.

export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TLDS = ["com", "net", "org", "io", "co", "info", "de", "ru"];

export function listNames(count: number, seed: number, parentCount = 1000): string[] {
  const random = seededRandom(seed);
  const word = () => {
    let out = "";
    const length = 3 + Math.floor(random() * 13);
    for (let i = 0; i < length; i++) out += String.fromCharCode(97 + Math.floor(random() * 26));
    return out;
  };
  const parents = Array.from(
    { length: parentCount },
    () => `${word()}.${TLDS[Math.floor(random() * TLDS.length)]}`,
  );
  const names: string[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const labels = 1 + Math.floor(random() * 3);
    let name = word();
    for (let j = 1; j < labels; j++) name += `.${word()}`;
    names[i] = `${name}.${parents[Math.floor(random() * parents.length)]}`;
  }
  return names;
}
