// Rules and block lists in front of the cache (SPEC §4): the policy decides
// per question; block and local_data are answered here, rewrite asks the
// inner resolver for another name/type and returns that under the asked
// name, forward goes straight to a named route.

import { readQuestion } from "../dns/wire.ts";
import type { Policy } from "../policy/rules.ts";
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

export function createPolicyResolver(inner: CachedResolver, policy: Policy): PolicyResolver {
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
      switch (decision.action) {
        case "pass":
          return inner.resolve(query, signal);
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
    },
    policyHits: () => policy.hits(),
  };
}
