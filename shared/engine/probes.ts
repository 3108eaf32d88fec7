// Ready-made probes for the active health check.

import { buildQuery } from "../dns/query.ts";
import { RrType } from "../dns/wire.ts";
import type { Probe } from "./health-check.ts";
import { createCryptoRandom, type Random, randomIndex } from "./random.ts";
import { checkAnswer } from "./winner.ts";

export interface DnsProbeOptions {
  /** Default "." */
  name?: string;
  /** Default NS. */
  type?: number;
  random?: Random;
}

/** Healthy when the upstream returns a valid response (any RCODE) to `. NS`. */
export function createDnsProbe(options: DnsProbeOptions = {}): Probe {
  const name = options.name ?? ".";
  const type = options.type ?? RrType.NS;
  const random = options.random ?? createCryptoRandom();
  return async (upstream, signal) => {
    const id = randomIndex(random, 0x10000);
    const query = buildQuery(name, type, { id });
    const answer = await upstream.query(query, signal);
    const checked = checkAnswer(query, id, answer, upstream.name);
    if (typeof checked !== "number") throw checked;
    return true;
  };
}

export interface HttpProbeOptions {
  /** The URL to check for each upstream (CoreDNS proxy's health_check PATH:PORT). */
  url: (upstream: { name: string }) => string;
  fetch?: typeof fetch;
}

/** Healthy when the URL answers 200-399 (redirects are not followed). */
export function createHttpProbe(options: HttpProbeOptions): Probe {
  const doFetch = options.fetch ?? ((input, init) => fetch(input, init));
  return async (upstream, signal) => {
    const response = await doFetch(options.url(upstream), { signal, redirect: "manual" });
    await response.body?.cancel();
    return response.status >= 200 && response.status <= 399;
  };
}
