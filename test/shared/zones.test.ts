import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseRelayConfig } from "../../shared/config/schema.ts";
import { createRouteTable } from "../../shared/config/zones.ts";
import { createSuffixSet } from "../../shared/policy/suffix-set.ts";

interface TestRoute {
  id: string;
  zones: string[];
  except?: string[];
}

const route = (id: string, zones: string[], except?: string[]): TestRoute =>
  except === undefined ? { id, zones } : { id, zones, except };

describe("createRouteTable", () => {
  it("picks the longest matching zone", () => {
    const table = createRouteTable([
      route("root", ["."]),
      route("example", ["example."]),
      route("corp", ["corp.example."]),
    ]);
    expect(table.match("a.corp.example.")?.route.id).toBe("corp");
    expect(table.match("corp.example.")?.route.id).toBe("corp");
    expect(table.match("b.example.")?.route.id).toBe("example");
    expect(table.match("xcorp.example.")?.route.id).toBe("example");
    expect(table.match("other.net.")?.route.id).toBe("root");
  });

  it("matches as a probe of every suffix would, with deep names and escaped dots", () => {
    const label = fc.constantFrom("a", "b", "c", "x\\.y", "B");
    const name = fc
      .array(label, { maxLength: 6 })
      .map((ls) => (ls.length ? `${ls.join(".")}.` : "."));
    fc.assert(
      fc.property(fc.uniqueArray(name, { minLength: 1, maxLength: 5 }), name, (zones, qname) => {
        const table = createRouteTable(zones.map((z, i) => route(String(i), [z])));
        // Brute force: the zone with the most labels that is a suffix on a label boundary.
        const lower = qname.toLowerCase();
        let best: { id: string; labels: number } | undefined;
        zones.forEach((z, i) => {
          const zl = z.toLowerCase();
          const fits =
            zl === "." || lower === zl || (lower.endsWith(`.${zl}`) && !lower.endsWith(`\\.${zl}`));
          const labels = zl === "." ? 0 : zl.replace(/\\./g, "").split(".").length - 1;
          if (fits && (!best || labels > best.labels)) best = { id: String(i), labels };
        });
        expect(table.match(qname)?.route.id).toBe(best?.id);
      }),
    );
  });

  it("reports the route's index in the list", () => {
    const table = createRouteTable([route("root", ["."]), route("corp", ["corp.example."])]);
    expect(table.match("a.corp.example.")?.index).toBe(1);
    expect(table.match("x.")?.index).toBe(0);
  });

  it("lets '.' match every name, the root included", () => {
    const table = createRouteTable([route("root", ["."])]);
    expect(table.match("a.b.c.d.")?.route.id).toBe("root");
    expect(table.match(".")?.route.id).toBe("root");
  });

  it("returns undefined when no zone matches (REFUSED)", () => {
    const table = createRouteTable([route("corp", ["corp.example."])]);
    expect(table.match("example.")).toBeUndefined();
    expect(table.match("other.net.")).toBeUndefined();
  });

  it("falls past a route that excepts the name to the next-longest zone", () => {
    const table = createRouteTable([
      route("root", ["."]),
      route("corp", ["corp.example."], ["public.corp.example."]),
    ]);
    expect(table.match("www.public.corp.example.")?.route.id).toBe("root");
    expect(table.match("public.corp.example.")?.route.id).toBe("root");
    expect(table.match("private.corp.example.")?.route.id).toBe("corp");
  });

  it("tries routes sharing a zone in declaration order before shorter zones", () => {
    const table = createRouteTable([
      route("root", ["."]),
      route("first", ["corp.example."], ["a.corp.example."]),
      route("second", ["corp.example."]),
    ]);
    expect(table.match("x.a.corp.example.")?.route.id).toBe("second");
    expect(table.match("b.corp.example.")?.route.id).toBe("first");
  });

  it("answers nothing when every candidate excepts the name", () => {
    const table = createRouteTable([route("root", ["."], ["blocked.example."])]);
    expect(table.match("x.blocked.example.")).toBeUndefined();
  });

  it("ignores case and a missing trailing dot", () => {
    const table = createRouteTable([
      route("corp", ["Corp.Example"], ["Public.Corp.Example"]),
      route("root", ["."]),
    ]);
    expect(table.match("A.CORP.example")?.route.id).toBe("corp");
    expect(table.match("x.PUBLIC.corp.EXAMPLE")?.route.id).toBe("root");
  });

  it("accepts a ready except matcher", () => {
    const table = createRouteTable([
      { id: "corp", zones: ["corp.example."], except: createSuffixSet(["skip.corp.example."]) },
      { id: "root", zones: ["."] },
    ]);
    expect(table.match("skip.corp.example.")?.route.id).toBe("root");
  });

  it("routes the normalized routes of a parsed config", () => {
    const { config } = parseRelayConfig({
      upstreams: [
        { name: "a", url: "1.1.1.1" },
        { name: "b", url: "9.9.9.9" },
      ],
      routes: [
        { upstreams: ["a"] },
        { zones: ["Corp.Example"], upstreams: ["b"], except: ["Public.Corp.Example"] },
      ],
    });
    const table = createRouteTable(config.routes);
    expect(table.match("x.corp.example.")?.route.upstreams).toEqual(["b"]);
    expect(table.match("x.public.corp.example.")?.route.upstreams).toEqual(["a"]);
  });

  it("agrees with a linear scan over random routes", () => {
    const label = fc.constantFrom("a", "b", "corp", "example");
    const name = fc
      .array(label, { maxLength: 3 })
      .map((ls) => (ls.length === 0 ? "." : `${ls.join(".")}.`));
    const routes = fc.array(
      fc.record({
        zones: fc.array(name, { minLength: 1, maxLength: 2 }),
        except: fc.array(name, { maxLength: 2 }),
      }),
      { maxLength: 5 },
    );
    const under = (q: string, zone: string) => zone === "." || q === zone || q.endsWith(`.${zone}`);
    const depth = (zone: string) => (zone === "." ? 0 : zone.split(".").length - 1);
    fc.assert(
      fc.property(routes, name, (list, qname) => {
        // Reference: every (zone, route) pair that matches and does not except the
        // name; the deepest zone wins, ties go to the earlier route.
        let best: { index: number; depth: number } | undefined;
        list.forEach((r, index) => {
          if (r.except.some((e) => under(qname, e))) return;
          for (const zone of r.zones) {
            if (!under(qname, zone)) continue;
            const d = depth(zone);
            if (best === undefined || d > best.depth || (d === best.depth && index < best.index)) {
              best = { index, depth: d };
            }
          }
        });
        expect(createRouteTable(list).match(qname)?.index).toBe(best?.index);
      }),
    );
  });
});
