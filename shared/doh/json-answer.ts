// The JSON answer format of the public resolvers' JSON APIs
// (application/dns-json): Status, flags, Question, Answer, Authority.
// Not a hot path: it decodes the whole message through the codec.

import { decodeMessage } from "../dns/codec.ts";
import { readHeader, readRcode, rrTypeFromName, walkRecords } from "../dns/wire.ts";

export interface JsonRecord {
  name: string;
  type: number;
  TTL: number;
  data: string;
}

export interface JsonAnswer {
  Status: number;
  TC: boolean;
  RD: boolean;
  RA: boolean;
  AD: boolean;
  CD: boolean;
  Question: { name: string; type: number }[];
  Answer?: JsonRecord[];
  Authority?: JsonRecord[];
  Comment?: string;
}

type DecodedRecord = { name: string; type: string; ttl?: number; data?: unknown };

const fqdn = (name: string) => (name === "" || name === "." ? "." : `${name.replace(/\.$/, "")}.`);
const typeNumber = (type: string) =>
  rrTypeFromName(type) ?? Number(/^UNKNOWN_(\d+)$/.exec(type)?.[1] ?? 0);

const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const quote = (bytes: Uint8Array) =>
  `"${Array.from(bytes, (b) =>
    b === 0x22 || b === 0x5c
      ? `\\${String.fromCharCode(b)}`
      : b < 0x20 || b > 0x7e
        ? `\\${b.toString().padStart(3, "0")}`
        : String.fromCharCode(b),
  ).join("")}"`;

function formatData(type: string, data: unknown, rdata: Uint8Array): string {
  const d = data as Record<string, unknown>;
  switch (type) {
    case "A":
    case "AAAA":
      return String(data);
    case "CNAME":
    case "NS":
    case "PTR":
    case "DNAME":
      return fqdn(String(data));
    case "MX":
      return `${d.preference ?? 0} ${fqdn(String(d.exchange))}`;
    case "TXT": {
      const parts = Array.isArray(data) ? data : [data];
      return parts
        .map((p) => quote(p instanceof Uint8Array ? p : new TextEncoder().encode(String(p))))
        .join(" ");
    }
    case "SOA":
      return [
        fqdn(String(d.mname)),
        fqdn(String(d.rname)),
        d.serial,
        d.refresh,
        d.retry,
        d.expire,
        d.minimum,
      ].join(" ");
    case "SRV":
      return `${d.priority ?? 0} ${d.weight ?? 0} ${d.port} ${fqdn(String(d.target))}`;
    case "CAA":
      return `${d.flags ?? 0} ${d.tag} ${quote(new TextEncoder().encode(String(d.value)))}`;
    default:
      // RFC 3597 generic form for everything else.
      return `\\# ${rdata.length}${rdata.length > 0 ? ` ${hex(rdata)}` : ""}`;
  }
}

function records(list: DecodedRecord[] | undefined, rdata: Uint8Array[]): JsonRecord[] | undefined {
  const out = (list ?? []).flatMap((r, i) =>
    r.type === "OPT"
      ? []
      : [
          {
            name: fqdn(r.name),
            type: typeNumber(r.type),
            TTL: r.ttl ?? 0,
            data: formatData(r.type, r.data, rdata[i] ?? new Uint8Array(0)),
          },
        ],
  );
  return out.length > 0 ? out : undefined;
}

/** Renders a DNS response as the JSON API object. */
export function toJsonAnswer(response: Uint8Array): JsonAnswer {
  const header = readHeader(response);
  const packet = decodeMessage(response);
  const answer: JsonAnswer = {
    Status: readRcode(response),
    TC: header.tc,
    RD: header.rd,
    RA: header.ra,
    AD: header.ad,
    CD: header.cd,
    Question: (packet.questions ?? []).map((q) => ({
      name: fqdn(q.name),
      type: typeNumber(q.type),
    })),
  };
  // Raw RDATA per record, for the generic form; the codec keeps the same order.
  const rdata: Record<string, Uint8Array[]> = { answer: [], authority: [], additional: [] };
  walkRecords(response, (rr) => {
    rdata[rr.section]!.push(response.subarray(rr.rdataOffset, rr.end));
  });
  const ans = records(packet.answers as DecodedRecord[] | undefined, rdata.answer!);
  const auth = records(packet.authorities as DecodedRecord[] | undefined, rdata.authority!);
  if (ans) answer.Answer = ans;
  if (auth) answer.Authority = auth;
  return answer;
}
