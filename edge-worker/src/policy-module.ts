// Runs the bundled policy module (edge-worker/policy/handle.ts) as the
// worker's programmable policy hook: its output is validated like an exec
// plugin's, and a module that throws, answers garbage or takes longer than
// the timeout lets the query through.

import { decisionFromPluginOutput, pluginInput } from "../../shared/policy/plugin-output.ts";
import type { Decision } from "../../shared/policy/rules.ts";
import type { PolicyHook } from "../../shared/resolver/policy-resolver.ts";

export type PolicyHandler = (question: { domain: string; type: string; qtype: number }) => unknown;

export function createModuleHook(
  handler: PolicyHandler,
  timeoutMs = 50,
  onError: (error: unknown) => void = () => {},
): PolicyHook {
  return {
    async decide(name, qtype): Promise<Decision> {
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        let output = handler(pluginInput(name, qtype).question);
        // Only an async module needs the race against the clock.
        if (output instanceof Promise) {
          output = await Promise.race([
            output,
            new Promise((_, reject) => {
              timer = setTimeout(
                () => reject(new Error(`policy module: no answer in ${timeoutMs} ms`)),
                timeoutMs,
              );
            }),
          ]);
        }
        const decision = decisionFromPluginOutput(output);
        if (decision instanceof Error) throw decision;
        return decision;
      } catch (error) {
        onError(error);
        return { action: "pass" };
      } finally {
        if (timer !== undefined) clearTimeout(timer);
      }
    },
  };
}
