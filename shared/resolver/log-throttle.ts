// At most one log line per interval for a repetitive event (SERVFAILs when
// an upstream is down), with the count of the ones skipped since the last.

export interface LogThrottle {
  /** Undefined when this occurrence is not to be logged; else how many were skipped before it. */
  take(): { suppressed: number } | undefined;
}

export function createLogThrottle(intervalMs: number, now: () => number = Date.now): LogThrottle {
  let next = Number.NEGATIVE_INFINITY;
  let suppressed = 0;
  return {
    take() {
      const t = now();
      if (t < next) {
        suppressed++;
        return undefined;
      }
      next = t + intervalMs;
      const skipped = suppressed;
      suppressed = 0;
      return { suppressed: skipped };
    },
  };
}
