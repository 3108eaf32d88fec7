// A connection being opened, as drivers see it: it settles once, against a
// deadline on the pool's clock that a later phase may replace (connect, then
// handshake), and fails as `closed` when the pool closes meanwhile.

import type { Clock, TimerHandle } from "../engine/clock.ts";
import { UpstreamError } from "../engine/errors.ts";

export interface Opening {
  /** Settles when finish() is first called (later calls do nothing). */
  readonly done: Promise<void>;
  finish(error?: UpstreamError): void;
  /** Fails with `error()` after `ms` unless finished first; replaces any earlier deadline. */
  deadline(ms: number, error: () => UpstreamError): void;
  readonly finished: boolean;
}

export function createOpening(name: string, clock: Clock, closing: AbortSignal): Opening {
  let timer: TimerHandle | undefined;
  let finished = false;
  let resolve: () => void = () => {};
  let reject: (error: UpstreamError) => void = () => {};
  const promise = new Promise<void>((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  const onClosing = () => opening.finish(new UpstreamError("closed", name));
  const opening: Opening = {
    done: promise,
    get finished() {
      return finished;
    },
    finish(error) {
      if (finished) return;
      finished = true;
      if (timer !== undefined) clock.clearTimeout(timer);
      closing.removeEventListener("abort", onClosing);
      if (error) reject(error);
      else resolve();
    },
    deadline(ms, error) {
      if (finished) return;
      if (timer !== undefined) clock.clearTimeout(timer);
      timer = clock.setTimeout(() => opening.finish(error()), ms);
    },
  };
  if (closing.aborted) onClosing();
  else closing.addEventListener("abort", onClosing, { once: true });
  return opening;
}
