// Rules and block lists in front of the cache (docs/architecture.md, "Policy"):
// the policy decides per question, then (for names it lets through) the
// programmable hook; block and local_data are answered here, rewrite asks
// the inner resolver for another name/type and returns that under the asked
// name, forward goes straight to a named route.

import { buildErrorResponse, EdeCode, type Question, Rcode, readQuestion } from "../dns/wire.ts";
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
  function apply(
    decision: Decision | { action: "servfail" },
    query: Uint8Array,
    signal: AbortSignal | undefined,
    question: Question,
  ): Promise<ResolveOutcome> {
    // The common cases straight through, without another async step.
    if (decision.action === "pass") return inner.resolve(query, signal, question);
    if (decision.action === "forward") return inner.resolveRoute(decision.route, query, signal);
    return answerHere(decision, query, signal);
  }

  async function answerHere(
    decision: Exclude<Decision, { action: "pass" | "forward" }> | { action: "servfail" },
    query: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<ResolveOutcome> {
    switch (decision.action) {
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
    resolve(query, signal) {
      let question: Question;
      try {
        question = readQuestion(query);
      } catch {
        return inner.resolve(query, signal); // the FORMERR path
      }
      try {
        const decision = policy.decide(question.name, question.type);
        if (decision.action === "pass" && hook) {
          return hook
            .decide(question.name, question.type)
            .then((hooked) => apply(hooked, query, signal, question));
        }
        return apply(decision, query, signal, question);
      } catch (error) {
        return Promise.reject(error);
      }
    },
    policyHits: () => policy.hits(),
  };
}
