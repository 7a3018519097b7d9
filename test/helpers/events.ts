/** Default overall deadline of a wait: generous, since it only bounds a test that is already failing. */
export const WAIT_DEADLINE_MS = 15_000;

interface Waiter<T> {
  readonly matches: (event: T) => boolean;
  readonly resolve: (event: T) => void;
}

/**
 * Events as they happen, with waits that resolve on the event itself (no polling, no sleeps).
 * `until` also looks at events already seen, so a wait started late still finds its event.
 */
export class EventLog<T> {
  readonly seen: T[] = [];
  readonly #waiters = new Set<Waiter<T>>();

  push(event: T): void {
    this.seen.push(event);
    for (const waiter of [...this.#waiters]) {
      if (waiter.matches(event)) {
        this.#waiters.delete(waiter);
        waiter.resolve(event);
      }
    }
  }

  /** The first event matching `matches`; rejects after `timeoutMs` naming `what` it waited for. */
  until(what: string, matches: (event: T) => boolean, timeoutMs = WAIT_DEADLINE_MS): Promise<T> {
    const found = this.seen.find(matches);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(
          new Error(`timed out after ${timeoutMs} ms waiting for ${what} (saw ${this.seen.length} events)`),
        );
      }, timeoutMs);
      const waiter: Waiter<T> = {
        matches,
        resolve: (event) => {
          clearTimeout(timer);
          resolve(event);
        },
      };
      this.#waiters.add(waiter);
    });
  }
}
