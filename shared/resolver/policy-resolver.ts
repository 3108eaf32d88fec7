// Rules and block lists in front of the cache (SPEC §4): the policy decides
// per question, then (for names it lets through) the programmable hook; block
// and local_data are answered here, rewrite asks the inner resolver for
// another name/type and returns that under the asked name, forward goes
// straight to a named route.

import { buildErrorResponse, EdeCode, Rcode, readQuestion } from "../dns/wire.ts";
import { UpstreamError } from "../engine/errors.ts";
import type { Decision, Policy } from "../policy/rules.ts";
import {
  answerUnderAskedName,
  blockedAnswer,
  localAnswer,
  rewrittenQuery,
} from "../policy/synthesize.ts";
import type { CachedResolver } from "./cached-resolver.ts";
import type { ResolveOutcome } from "./create-resolver.ts";

export interface PolicyResolver extends CachedResolver {
  policyHits(): Record<string, number>;
}

const local = (answer: Uint8Array): ResolveOutcome => ({
  kind: "answer",
  answer,
  route: "policy",
  upstream: "policy",
});

/** Programmable policy asked after the rules (the relay's exec plugins). */
export interface PolicyHook {
  decide(name: string, qtype: number): Promise<Decision | { action: "servfail" }>;
}

export function createPolicyResolver(
  inner: CachedResolver,
  policy: Policy,
  hook?: PolicyHook,
): PolicyResolver {
  async function apply(
    decision: Decision | { action: "servfail" },
    query: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<ResolveOutcome> {
    switch (decision.action) {
      case "pass":
        return inner.resolve(query, signal);
      case "servfail":
        return {
          kind: "servfail",
          answer: buildErrorResponse(query, Rcode.SERVFAIL, {
            ede: { code: EdeCode.OTHER, text: "policy plugin failed" },
          }),
          route: "policy",
          error: new UpstreamError("internal", "policy", "policy plugin failed"),
        };
      case "block":
        return local(blockedAnswer(query, decision.with, decision.source));
      case "local_data":
        return local(localAnswer(query, decision));
      case "forward":
        return inner.resolveRoute(decision.route, query, signal);
      case "rewrite": {
        const outcome = await inner.resolve(
          rewrittenQuery(query, decision.name, decision.qtype),
          signal,
        );
        return { ...outcome, answer: answerUnderAskedName(query, outcome.answer) };
      }
    }
  }

  return {
    ...inner,
    async resolve(query, signal) {
      let question: ReturnType<typeof readQuestion>;
      try {
        question = readQuestion(query);
      } catch {
        return inner.resolve(query, signal); // the FORMERR path
      }
      const decision = policy.decide(question.name, question.type);
      if (decision.action === "pass" && hook) {
        return apply(await hook.decide(question.name, question.type), query, signal);
      }
      return apply(decision, query, signal);
    },
    policyHits: () => policy.hits(),
  };
}
