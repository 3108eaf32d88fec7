// A small authoritative server for `npm run demo` on machines without nsd
// and unbound: one zone held in memory, UDP and TCP on one loopback port.
// Names it holds get their records (AA set); other names under the zone get
// NXDOMAIN with the SOA; names outside it get REFUSED.

import { createSocket } from "node:dgram";
import { createServer, type Socket } from "node:net";
import { type DnsRecord, decodeMessage, encodeMessage } from "../shared/dns/codec.ts";
import { createFrameReader, frameMessage } from "../shared/dns/framing.ts";
import { Rcode } from "../shared/dns/wire.ts";

export interface ZoneRecord {
  name: string;
  type: "A" | "AAAA" | "TXT" | "CNAME";
  data: string;
}

export interface ZoneServer {
  readonly port: number;
  stop(): Promise<void>;
}

export function answerFromZone(
  zone: string,
  records: ZoneRecord[],
  query: Uint8Array,
): Uint8Array | undefined {
  let packet: ReturnType<typeof decodeMessage>;
  try {
    packet = decodeMessage(query);
  } catch {
    return undefined;
  }
  const question = packet.questions?.[0];
  if (!question || packet.type !== "query") return undefined;
  const name = question.name.toLowerCase().replace(/\.$/, "");
  const apex = zone.replace(/\.$/, "");
  const inZone = name === apex || name.endsWith(`.${apex}`);
  const soa: DnsRecord = {
    name: apex,
    type: "SOA",
    ttl: 60,
    data: {
      mname: `ns.${apex}`,
      rname: `admin.${apex}`,
      serial: 1,
      refresh: 3600,
      retry: 600,
      expiration: 86400,
      minimum: 60,
    },
  };
  const held = records.filter((r) => r.name === name);
  const answers = held
    .filter((r) => r.type === question.type || r.type === "CNAME")
    .map((r) => ({
      name: r.name,
      type: r.type,
      ttl: 60,
      data: r.type === "TXT" ? [r.data] : r.data,
    }));
  const rcode = !inZone ? Rcode.REFUSED : held.length === 0 ? Rcode.NXDOMAIN : Rcode.NOERROR;
  return encodeMessage({
    id: packet.id ?? 0,
    type: "response",
    flags: (inZone ? 0x0400 : 0) | ((packet.flags ?? 0) & 0x0100) | rcode,
    questions: [question],
    answers: answers as DnsRecord[],
    authorities: inZone && answers.length === 0 ? [soa] : [],
  });
}

export async function startZoneServer(
  zone: string,
  records: ZoneRecord[],
  port = 0,
): Promise<ZoneServer> {
  const tcp = createServer((socket: Socket) => {
    const reader = createFrameReader();
    socket.on("error", () => socket.destroy());
    socket.setTimeout(10_000, () => socket.destroy());
    socket.on("data", (chunk) => {
      for (const query of reader.push(new Uint8Array(chunk))) {
        const answer = answerFromZone(zone, records, query);
        if (answer) socket.write(frameMessage(answer));
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(port, "127.0.0.1", resolve);
  });
  const bound = (tcp.address() as { port: number }).port;
  const udp = createSocket("udp4");
  udp.on("message", (msg, rinfo) => {
    const answer = answerFromZone(zone, records, new Uint8Array(msg));
    if (answer) udp.send(answer, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    udp.once("error", reject);
    udp.bind(bound, "127.0.0.1", resolve);
  });
  return {
    port: bound,
    async stop() {
      await Promise.all([
        new Promise<void>((resolve) => udp.close(() => resolve())),
        new Promise((resolve) => tcp.close(resolve)),
      ]);
    },
  };
}
