/**
 * Event-driven waiting for the fakes: a fake calls `notify()` after every request it records, and
 * `waitFor` re-checks its predicate then, instead of polling.
 */
export class Waiters {
  readonly #waiters = new Set<() => void>();

  constructor(private readonly label: string) {}

  notify(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }

  /** Resolves with the predicate's first truthy value, or rejects after `timeoutMs`. */
  async waitFor<T>(
    predicate: () => T | undefined | false,
    timeoutMs = 20_000,
    what = 'condition',
  ): Promise<T> {
    const now = predicate();
    if (now !== undefined && now !== false) return now;
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        let value: T | undefined | false;
        try {
          value = predicate();
        } catch (error) {
          cleanup();
          reject(error);
          return;
        }
        if (value !== undefined && value !== false) {
          cleanup();
          resolve(value);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${this.label}: timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
    });
  }
}
