// Block list files: one domain per line, hosts format ("0.0.0.0 a.example
// b.example"), or simple Adblock rules ("||a.example^"). Comments (#, !),
// blank lines and hosts' own names (localhost and friends) are skipped;
// lines that are none of these are counted as rejected.

export interface ParsedList {
  names: string[];
  rejected: number;
}

const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;
const IP = /^(\d{1,3}(\.\d{1,3}){3}|[0-9a-f]*:[0-9a-f:.]*)$/i; // IPv6 needs a colon: "bad" is not one
const HOSTS_OWN = new Set([
  "localhost",
  "localhost.localdomain",
  "local",
  "broadcasthost",
  "ip6-localhost",
  "ip6-loopback",
  "ip6-localnet",
  "ip6-mcastprefix",
  "ip6-allnodes",
  "ip6-allrouters",
  "ip6-allhosts",
  "0.0.0.0",
]);

function domain(text: string): string | undefined {
  const name = text.toLowerCase().replace(/\.$/, "");
  if (name.length === 0 || name.length > 253) return undefined;
  return name.split(".").every((l) => LABEL.test(l)) ? name : undefined;
}

/** Parses one list's text; every line is handled on its own. */
export function parseList(text: string): ParsedList {
  const names: string[] = [];
  let rejected = 0;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "" || line.startsWith("!") || line.startsWith("[")) continue;
    const adblock = /^\|\|([^/^$*]+)\^(\$.*)?$/.exec(line);
    if (adblock) {
      const name = domain(adblock[1]!);
      if (name) names.push(name);
      else rejected++;
      continue;
    }
    const fields = line.split(/\s+/);
    const hosts = fields.length > 1 && IP.test(fields[0]!) ? fields.slice(1) : fields;
    if (hosts.length !== 1 && hosts === fields) {
      rejected++;
      continue;
    }
    for (const field of hosts) {
      if (HOSTS_OWN.has(field.toLowerCase())) continue;
      const name = domain(field);
      if (name) names.push(name);
      else rejected++;
    }
  }
  return { names, rejected };
}
