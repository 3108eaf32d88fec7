// Counts a listener's queries from arrival until their answer is handed to
// the socket, so closing waits for answers already computed.

export interface Pending {
  add(): void;
  done(): void;
  readonly count: number;
  /** Resolves when the count is zero. */
  idle(): Promise<void>;
}

export function createPending(): Pending {
  let count = 0;
  let waiters: (() => void)[] = [];
  return {
    get count() {
      return count;
    },
    add() {
      count++;
    },
    done() {
      count--;
      if (count === 0 && waiters.length > 0) {
        const ready = waiters;
        waiters = [];
        for (const w of ready) w();
      }
    },
    idle() {
      return count === 0 ? Promise.resolve() : new Promise((resolve) => waiters.push(resolve));
    },
  };
}
