// The one base of the errors doh-edge throws on purpose (config, DNS wire,
// upstream, policy, plugin, ...): `code` is stable and for programs (tests,
// logs, metrics labels), `message` is for people. `instanceof DohEdgeError`
// tells our own failures from bugs and from the runtime's errors.

export abstract class DohEdgeError extends Error {
  /** Stable, machine-readable; each subclass lists its codes. */
  abstract readonly code: string;
  /** The class's name, spelled out: the worker's minified bundle renames classes. */
  abstract override readonly name: string;
}
