// What the relay accumulates between two statsd flushes, in memory:
// counters are summed (one line per flush, only when they moved), gauges
// keep the value set last, and timers keep a uniform sample (reservoir) of
// at most `timerSamples` values per series. Each kept sample goes out as its
// own `|ms` line tagged `|@rate` (kept ÷ seen), so a statsd server's count
// and rate for the timer stay right while its percentiles come from the
// sample. drain() renders the lines and starts the next interval.

import type { Random } from "../../../shared/engine/random.ts";

export interface CounterHandle {
  add(by?: number): void;
}

export interface TimerHandle {
  /** A duration in ms. */
  record(ms: number): void;
}

export interface StatsdRegistry {
  /** The same handle for the same name, so hot paths can keep it. */
  counter(name: string): CounterHandle;
  timer(name: string): TimerHandle;
  /** Sent at the next flush (and not again unless set again). */
  gauge(name: string, value: number): void;
  /** Lines (`name:value|type[|@rate]`) for everything since the last drain. */
  drain(): string[];
}

export interface RegistryOptions {
  /** Dotted prefix without the trailing dot ("" for none). */
  prefix: string;
  /** Share of timer samples considered at all (statsd's sample rate), 0 < r ≤ 1. */
  sampleRate: number;
  timerSamples: number;
  random: Random;
}

interface Counter extends CounterHandle {
  value: number;
}

interface Timer extends TimerHandle {
  /** Samples offered this interval (after sampleRate). */
  seen: number;
  kept: number[];
}

/** Rounded to µs: enough for latency, short on the wire. */
const ms3 = (ms: number) => Math.round(ms * 1000) / 1000;

/** A statsd sample rate, short: 4 significant digits. */
const rateText = (rate: number) => String(Number(rate.toPrecision(4)));

export function createStatsdRegistry(options: RegistryOptions): StatsdRegistry {
  const { sampleRate, timerSamples, random } = options;
  const head = options.prefix === "" ? "" : `${options.prefix}.`;
  const counters = new Map<string, Counter>();
  const timers = new Map<string, Timer>();
  const gauges = new Map<string, number>();

  function newTimer(): Timer {
    const timer: Timer = {
      seen: 0,
      kept: [],
      record(ms) {
        if (sampleRate < 1 && random.next() >= sampleRate) return;
        timer.seen++;
        if (timer.kept.length < timerSamples) {
          timer.kept.push(ms);
          return;
        }
        // Algorithm R: the n-th sample replaces a kept one with chance k/n.
        const slot = Math.floor(random.next() * timer.seen);
        if (slot < timerSamples) timer.kept[slot] = ms;
      },
    };
    return timer;
  }

  return {
    counter(name) {
      let counter = counters.get(name);
      if (!counter) {
        const c: Counter = {
          value: 0,
          add(by = 1) {
            c.value += by;
          },
        };
        counter = c;
        counters.set(name, counter);
      }
      return counter;
    },
    timer(name) {
      let timer = timers.get(name);
      if (!timer) {
        timer = newTimer();
        timers.set(name, timer);
      }
      return timer;
    },
    gauge(name, value) {
      gauges.set(name, value);
    },
    drain() {
      const lines: string[] = [];
      for (const [name, counter] of counters) {
        if (counter.value === 0) continue;
        lines.push(`${head}${name}:${counter.value}|c`);
        counter.value = 0;
      }
      for (const [name, value] of gauges) {
        // A leading sign means "adjust by": a negative gauge is set via 0.
        if (value < 0) lines.push(`${head}${name}:0|g`);
        lines.push(`${head}${name}:${value}|g`);
      }
      gauges.clear();
      for (const [name, timer] of timers) {
        if (timer.seen === 0) continue;
        const rate = (sampleRate * timer.kept.length) / timer.seen;
        const tail = rate < 1 ? `|ms|@${rateText(rate)}` : "|ms";
        for (const ms of timer.kept) lines.push(`${head}${name}:${ms3(ms)}${tail}`);
        timer.seen = 0;
        timer.kept = [];
      }
      return lines;
    },
  };
}

/** A name segment from a configured name: anything but letters, digits, "_" and "-" becomes "_". */
export function segment(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, "_");
}

/** Lines joined by "\n" into packets of at most `maxBytes` (a longer line goes alone). */
export function packLines(lines: readonly string[], maxBytes: number): string[] {
  const packets: string[] = [];
  let current = "";
  for (const line of lines) {
    if (current === "") current = line;
    else if (current.length + 1 + line.length <= maxBytes) current += `\n${line}`;
    else {
      packets.push(current);
      current = line;
    }
  }
  if (current !== "") packets.push(current);
  return packets;
}
