// Every key a schema accepts, read from the schema itself (so a new field is
// known the moment it is added): the "keys are snake_case" hint offers only
// keys that exist.

import type * as z from "zod";

/** The schemas a config is made of; wrappers are looked through to what they wrap. */
interface WalkedDef {
  type: z.core.$ZodTypeDef["type"];
  shape?: Record<string, z.core.$ZodType>;
  element?: z.core.$ZodType;
  innerType?: z.core.$ZodType;
  in?: z.core.$ZodType;
  out?: z.core.$ZodType;
  options?: readonly z.core.$ZodType[];
}

/** The names of every object key anywhere inside `schema`. */
export function collectKeys(schema: z.core.$ZodType): Set<string> {
  const keys = new Set<string>();
  const seen = new Set<z.core.$ZodType>();
  const visit = (node: z.core.$ZodType | undefined) => {
    if (node === undefined || seen.has(node)) return;
    seen.add(node);
    const def = node._zod.def as WalkedDef;
    for (const [key, child] of Object.entries(def.shape ?? {})) {
      keys.add(key);
      visit(child);
    }
    visit(def.element);
    visit(def.innerType);
    visit(def.in);
    visit(def.out);
    for (const option of def.options ?? []) visit(option);
  };
  visit(schema);
  return keys;
}
