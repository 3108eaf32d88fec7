// Answers the relay or worker makes itself (rules, block lists, rewrites),
// well-formed for the asker: its ID and question, RD copied, RA set, AA off,
// and its EDNS kept (with an Extended DNS Error saying why, when blocked).

import { type DnsPacket, type DnsRecord, decodeMessage, encodeMessage } from "../dns/codec.ts";
import { EDE_OPTION_CODE, EdeCode, Rcode } from "../dns/codes.ts";
import { EDNS_UDP_SIZE } from "../dns/wire.ts";

export interface LocalData {
  ips: string[];
  txt: string[];
  cname?: string | undefined;
  ttl: number;
}

const RA = 0x0080;
const RD_CD = 0x0110;

function ede(code: number, text: string): Uint8Array {
  const bytes = new TextEncoder().encode(text);
  const out = new Uint8Array(2 + bytes.length);
  out[0] = code >> 8;
  out[1] = code & 0xff;
  out.set(bytes, 2);
  return out;
}

/** The asker's OPT echoed (size and DO), plus `options`; none when the query had no EDNS. */
function optFor(query: DnsPacket, options: { code: number; data: Uint8Array }[] = []): DnsRecord[] {
  const opt = query.additionals?.find((r) => r.type === "OPT");
  if (!opt) return [];
  return [
    {
      name: ".",
      type: "OPT",
      udpPayloadSize: opt.udpPayloadSize ?? EDNS_UDP_SIZE,
      flags: (opt.flags ?? 0) & 0x8000,
      options,
    },
  ];
}

function respond(
  query: Uint8Array,
  rcode: number,
  answers: DnsRecord[],
  options: { code: number; data: Uint8Array }[] = [],
): Uint8Array {
  const q = decodeMessage(query);
  return encodeMessage({
    id: q.id ?? 0,
    type: "response",
    flags: ((q.flags ?? 0) & RD_CD) | RA | rcode,
    questions: q.questions ?? [],
    answers,
    additionals: optFor(q, options),
  });
}

const isV6 = (ip: string) => ip.includes(":");

/** Local data for the asked type: A/AAAA from `ips`, TXT, or a CNAME (any type). NODATA otherwise. */
export function localAnswer(query: Uint8Array, data: LocalData): Uint8Array {
  const question = decodeMessage(query).questions?.[0];
  const name = question?.name ?? ".";
  const type = question?.type;
  let answers: DnsRecord[] = [];
  if (data.cname !== undefined) {
    answers = [{ name, type: "CNAME", ttl: data.ttl, data: data.cname.replace(/\.$/, "") }];
  } else if (type === "A" || type === "AAAA") {
    answers = data.ips
      .filter((ip) => isV6(ip) === (type === "AAAA"))
      .map((ip) => ({ name, type, ttl: data.ttl, data: ip }));
  } else if (type === "TXT") {
    answers = data.txt.map((text) => ({ name, type: "TXT", ttl: data.ttl, data: [text] }));
  }
  return respond(query, Rcode.NOERROR, answers);
}

/** A blocked name: NXDOMAIN, or the null address (0.0.0.0 / ::, NODATA for other types). */
export function blockedAnswer(
  query: Uint8Array,
  how: "nxdomain" | "null_ip",
  why: "rule" | "blocklist",
  ttl = 60,
): Uint8Array {
  const options = [
    {
      code: EDE_OPTION_CODE,
      data: ede(why === "blocklist" ? EdeCode.BLOCKED : EdeCode.FILTERED, `blocked by ${why}`),
    },
  ];
  if (how === "nxdomain") return respond(query, Rcode.NXDOMAIN, [], options);
  const question = decodeMessage(query).questions?.[0];
  const name = question?.name ?? ".";
  const answers: DnsRecord[] =
    question?.type === "A"
      ? [{ name, type: "A", ttl, data: "0.0.0.0" }]
      : question?.type === "AAAA"
        ? [{ name, type: "AAAA", ttl, data: "::" }]
        : [];
  return respond(query, Rcode.NOERROR, answers, options);
}

/** `query` asking for `name` and/or `qtype` instead (ID, flags and EDNS kept). */
export function rewrittenQuery(query: Uint8Array, name?: string, qtype?: string): Uint8Array {
  const q = decodeMessage(query);
  const question = q.questions?.[0];
  return encodeMessage({
    ...q,
    questions: [
      {
        name: name !== undefined ? name.replace(/\.$/, "") : (question?.name ?? "."),
        type: qtype ?? question?.type ?? "A",
        class: question?.class ?? "IN",
      },
    ],
  });
}

/**
 * The answer to a rewritten query, returned under the asked name: the
 * asker's ID and question, and records owned by the rewritten name renamed
 * to the asked one (a CNAME chain's later records stay as they are).
 */
export function answerUnderAskedName(query: Uint8Array, answer: Uint8Array): Uint8Array {
  const q = decodeMessage(query);
  const a = decodeMessage(answer);
  const asked = q.questions?.[0]?.name ?? ".";
  const served = (a.questions?.[0]?.name ?? "").toLowerCase();
  const rename = (records: DnsRecord[] | undefined) =>
    (records ?? []).map((r) => (r.name.toLowerCase() === served ? { ...r, name: asked } : r));
  return encodeMessage({
    id: q.id ?? 0,
    type: "response",
    flags: ((q.flags ?? 0) & RD_CD) | ((a.flags ?? 0) & ~RD_CD & 0x7fff),
    questions: q.questions ?? [],
    answers: rename(a.answers),
    authorities: a.authorities ?? [],
    additionals: optFor(q),
  });
}
