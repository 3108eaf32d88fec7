// Rules, block lists and the answers they make (Node and workerd).

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseRelayConfig } from "../../shared/config/schema.ts";
import { decodeMessage, encodeMessage } from "../../shared/dns/codec.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { EDE_OPTION_CODE, readEdns, readHeader, readId } from "../../shared/dns/wire.ts";
import { parseList } from "../../shared/policy/list-parse.ts";
import {
  decisionFromPluginOutput,
  PluginOutputError,
  pluginInput,
} from "../../shared/policy/plugin-output.ts";
import { createPolicy } from "../../shared/policy/rules.ts";
import { createSuffixSet } from "../../shared/policy/suffix-set.ts";
import {
  answerUnderAskedName,
  blockedAnswer,
  localAnswer,
  rewrittenQuery,
} from "../../shared/policy/synthesize.ts";

const rulesOf = (rules: unknown[]) =>
  parseRelayConfig({
    upstreams: [{ name: "u", url: "udp://127.0.0.1" }],
    routes: [
      { zones: ["."], upstreams: ["u"] },
      { name: "lan", zones: ["lan."], upstreams: ["u"] },
    ],
    rules,
  }).config.rules;

describe("suffix set", () => {
  it("matches a name and everything below it, case-insensitively, and nothing else", () => {
    const set = createSuffixSet(["Ads.Example.", "tracker.test"]);
    expect(set.matches("ads.example")).toBe(true);
    expect(set.matches("x.y.ADS.example.")).toBe(true);
    expect(set.matches("example")).toBe(false);
    expect(set.matches("badads.example")).toBe(false);
    expect(set.matches("tracker.test.other")).toBe(false);
    expect(set.size).toBe(2);
  });

  it("is the except lists' set: no split at an escaped dot, and the root covers every name", () => {
    // readQuestion writes a dot inside a label as "\.": "x\.ads" is one label.
    expect(createSuffixSet(["ads.example"]).matches("x\\.ads.example")).toBe(false);
    expect(createSuffixSet(["ads.example"]).matches("x\\.y.ads.example")).toBe(true);
    expect(createSuffixSet(["."]).matches("any.name.test")).toBe(true);
    expect(createSuffixSet([]).matches(".")).toBe(false);
  });
});

describe("block list parsing", () => {
  it("reads domain lists, hosts files and simple Adblock rules; skips comments and hosts' own names", () => {
    const { names, rejected } = parseList(
      [
        "# a comment",
        "ads.example",
        "0.0.0.0 tracker.example # trailing comment",
        "127.0.0.1 a.example b.example",
        ":: v6.example",
        "127.0.0.1 localhost",
        "::1 ip6-localhost",
        "||adblock.example^",
        "||opt.example^$third-party",
        "! adblock comment",
        "[Adblock Plus 2.0]",
        "",
        "not a domain!",
        "0.0.0.0 bad_-.example",
        "bad line here", // "bad" looks like hex, but an IPv6 address needs a colon
        "fe80::1%eth0 linklocal.example",
      ].join("\n"),
    );
    expect(names).toEqual([
      "ads.example",
      "tracker.example",
      "a.example",
      "b.example",
      "v6.example",
      "adblock.example",
      "opt.example",
    ]);
    expect(rejected).toBe(4);
  });
});

describe("policy decisions", () => {
  const policy = createPolicy({
    rules: rulesOf([
      { match: { name: "exact.test" }, action: "block" },
      { match: { suffix: "ads.test" }, action: "block", block_with: "null_ip" },
      {
        match: { name: "local.test", qtype: ["A", "AAAA"] },
        action: "local_data",
        ips: ["10.0.0.1", "fd00::1"],
      },
      { match: { suffix: "lan" }, action: "forward", route: "lan" },
      { match: { name: "old.test" }, action: "rewrite", rewrite_domain: "new.test" },
      { match: { suffix: "test" }, action: "local_data", txt: ["catch-all"] },
    ]),
    blocklist: createSuffixSet(["listed.example"]),
    allowlist: ["ok.listed.example"],
  });

  it("takes the first matching rule, by exact name, suffix and qtype", () => {
    expect(policy.decide("exact.test.", 1)).toMatchObject({ action: "block", with: "nxdomain" });
    expect(policy.decide("sub.exact.test.", 1)).toMatchObject({
      action: "local_data",
      txt: ["catch-all"],
    });
    expect(policy.decide("x.ads.test.", 28)).toMatchObject({ action: "block", with: "null_ip" });
    expect(policy.decide("local.test.", 28)).toMatchObject({
      action: "local_data",
      ips: ["10.0.0.1", "fd00::1"],
    });
    expect(policy.decide("local.test.", 16)).toMatchObject({ txt: ["catch-all"] });
    expect(policy.decide("printer.lan.", 1)).toEqual({ action: "forward", route: "lan" });
    expect(policy.decide("OLD.test.", 1)).toMatchObject({ action: "rewrite", name: "new.test." });
  });

  it("blocks listed names unless allowlisted (with parents), and passes the rest", () => {
    expect(policy.decide("a.listed.example.", 1)).toEqual({
      action: "block",
      with: "nxdomain",
      source: "blocklist",
    });
    expect(policy.decide("ok.listed.example.", 1)).toEqual({ action: "pass" });
    expect(policy.decide("deep.ok.listed.example.", 1)).toEqual({ action: "pass" });
    expect(policy.decide("example.org.", 1)).toEqual({ action: "pass" });
    expect(policy.hits()).toEqual({ block: 3, local_data: 3, forward: 1, rewrite: 1 });
  });
});

describe("synthesized answers", () => {
  const query = (name: string, type: number, edns = true) =>
    buildQuery(name, type, { id: 777, ...(edns ? { ednsUdpSize: 1400 } : {}) });

  function wellFormed(answer: Uint8Array, asked: Uint8Array) {
    const header = readHeader(answer);
    expect(header.id).toBe(777);
    expect(header.qr).toBe(true);
    expect(header.aa).toBe(false);
    expect(header.ra).toBe(true);
    expect(header.rd).toBe(readHeader(asked).rd);
    expect(decodeMessage(answer).questions).toEqual(decodeMessage(asked).questions);
    expect(readEdns(answer)?.udpSize).toBe(readEdns(asked)?.udpSize);
  }

  it("blocks with NXDOMAIN or the null address, with an Extended DNS Error", () => {
    const nx = blockedAnswer(query("a.test", 1), "nxdomain", "blocklist");
    wellFormed(nx, query("a.test", 1));
    expect(readHeader(nx).rcode).toBe(3);
    const ede = readEdns(nx)?.options.find((o) => o.code === EDE_OPTION_CODE);
    expect(ede?.data[1]).toBe(15); // Blocked
    const a = blockedAnswer(query("a.test", 1), "null_ip", "rule");
    const aaaa = blockedAnswer(query("a.test", 28), "null_ip", "rule");
    const mx = blockedAnswer(query("a.test", 15), "null_ip", "rule");
    expect(decodeMessage(a).answers?.[0]?.data).toBe("0.0.0.0");
    expect(decodeMessage(aaaa).answers?.[0]?.data).toBe("::");
    expect(decodeMessage(mx).answers).toEqual([]);
    expect(readHeader(mx).rcode).toBe(0);
  });

  it("answers local data by type: A, AAAA, TXT, a CNAME for any type, NODATA otherwise", () => {
    const data = { ips: ["192.0.2.7", "2001:db8::7"], txt: ["hello"], ttl: 42 };
    const a = localAnswer(query("l.test", 1, false), data);
    wellFormed(a, query("l.test", 1, false));
    expect(readEdns(a)).toBeUndefined();
    expect(decodeMessage(a).answers).toMatchObject([{ type: "A", data: "192.0.2.7", ttl: 42 }]);
    expect(decodeMessage(localAnswer(query("l.test", 28), data)).answers).toMatchObject([
      { type: "AAAA", data: "2001:db8::7" },
    ]);
    const txt = decodeMessage(localAnswer(query("l.test", 16), data)).answers?.[0]
      ?.data as Uint8Array[];
    expect(new TextDecoder().decode(txt[0])).toBe("hello");
    expect(decodeMessage(localAnswer(query("l.test", 15), data)).answers).toEqual([]);
    expect(
      decodeMessage(localAnswer(query("l.test", 1), { ...data, cname: "target.test." })).answers,
    ).toMatchObject([{ name: "l.test", type: "CNAME", data: "target.test" }]);
  });

  it("returns a rewritten query's answer under the asked name", () => {
    const asked = query("Old.test", 1);
    const rewritten = rewrittenQuery(asked, "new.test.", undefined);
    expect(readId(rewritten)).toBe(777);
    expect(decodeMessage(rewritten).questions?.[0]).toMatchObject({ name: "new.test", type: "A" });
    const upstream = encodeMessage({
      id: 777,
      type: "response",
      flags: 0x8180,
      questions: [{ name: "new.test", type: "A" }],
      answers: [
        { name: "new.test", type: "CNAME", ttl: 60, data: "real.test" },
        { name: "real.test", type: "A", ttl: 60, data: "192.0.2.9" },
      ],
    });
    const answer = answerUnderAskedName(asked, upstream);
    wellFormed(answer, asked);
    expect(decodeMessage(answer).answers).toMatchObject([
      { name: "Old.test", type: "CNAME", data: "real.test" },
      { name: "real.test", type: "A", data: "192.0.2.9" },
    ]);
  });

  it("always makes a message that decodes and echoes the question", () => {
    const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
    fc.assert(
      fc.property(
        fc.array(label, { minLength: 1, maxLength: 4 }),
        fc.constantFrom(1, 28, 16, 15, 255),
        fc.boolean(),
        fc.constantFrom("nxdomain", "null_ip") as fc.Arbitrary<"nxdomain" | "null_ip">,
        (labels, type, edns, how) => {
          const q = query(labels.join("."), type, edns);
          for (const answer of [
            blockedAnswer(q, how, "rule"),
            localAnswer(q, { ips: ["192.0.2.1", "::1"], txt: ["t"], ttl: 5 }),
          ]) {
            expect(decodeMessage(answer).questions).toEqual(decodeMessage(q).questions);
            expect(readId(answer)).toBe(777);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("plugin output (untrusted)", () => {
  it("maps BalanceDNS's actions", () => {
    expect(decisionFromPluginOutput({ action: "FORWARD" })).toEqual({ action: "pass" });
    expect(decisionFromPluginOutput({ action: "block" })).toMatchObject({ action: "block" });
    expect(
      decisionFromPluginOutput({
        action: "REWRITE",
        rewrite_domain: "x.example.",
        rewrite_type: 28,
      }),
    ).toEqual({ action: "rewrite", name: "x.example.", qtype: "AAAA" });
    expect(
      decisionFromPluginOutput({
        action: "LOCAL_DATA",
        local_data: { ip: "10.0.0.1", ips: ["::1"], ttl: 5 },
      }),
    ).toEqual({ action: "local_data", ips: ["10.0.0.1", "::1"], txt: [], ttl: 5 });
  });

  it("turns any other JSON into a typed error, never a throw", () => {
    for (const bad of [
      null,
      "FORWARD",
      [],
      {},
      { action: "NUKE" },
      { action: "LOCAL_DATA" },
      { action: "LOCAL_DATA", local_data: { ips: ["not-an-ip"] } },
      { action: "LOCAL_DATA", local_data: { ip: "10.0.0.1", ttl: -1 } },
      { action: "REWRITE" },
      { action: "REWRITE", rewrite_type: "NOPE" },
      { action: "REWRITE", rewrite_domain: "bad name!" },
    ]) {
      expect(decisionFromPluginOutput(bad), JSON.stringify(bad)).toBeInstanceOf(PluginOutputError);
    }
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const result = decisionFromPluginOutput(value);
        expect(result instanceof PluginOutputError || typeof result.action === "string").toBe(true);
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(
        fc.record(
          {
            action: fc.constantFrom("FORWARD", "BLOCK", "REWRITE", "LOCAL_DATA", "x"),
            rewrite_domain: fc.oneof(fc.string(), fc.constant("a.example.")),
            rewrite_type: fc.oneof(fc.string(), fc.integer()),
            local_data: fc.record(
              { ip: fc.string(), ips: fc.array(fc.string()), ttl: fc.jsonValue() },
              { requiredKeys: [] },
            ),
          },
          { requiredKeys: ["action"] },
        ),
        (value) => {
          const result = decisionFromPluginOutput(value);
          expect(result instanceof PluginOutputError || typeof result.action === "string").toBe(
            true,
          );
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("builds BalanceDNS's input", () => {
    expect(pluginInput("example.org", 28)).toEqual({
      question: { domain: "example.org.", type: "AAAA", qtype: 28 },
    });
  });
});
