// Type shim for the "buffer" module inside shared/ (type-checked without Node
// types; see shared/tsconfig.json "paths"). Declares only what codec.ts uses.
// At run time Node provides the module, and workerd does under nodejs_compat.

export interface Buffer extends Uint8Array {}

export declare const Buffer: {
  /** Copies the bytes into a new Buffer. */
  from(data: Uint8Array): Buffer;
};
