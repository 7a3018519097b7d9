/**
 * Per-key serial chains: work queued under one key runs in order (for a job: queued message →
 * progress edits → result), work under different keys runs concurrently.
 */
export class Chains {
  readonly #tails = new Map<string, Promise<void>>();

  /** Runs `run` after everything queued before it under `key`; errors reach the caller, not the chain. */
  run<T>(key: string, run: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    const result = previous.then(run);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.#tails.set(key, tail);
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return result;
  }

  /** Settles once everything queued under `key` so far has run (at once when nothing is). */
  async idle(key: string): Promise<void> {
    await this.#tails.get(key);
  }

  /** Settles once everything queued so far, under every key, has run. */
  async drain(): Promise<void> {
    await Promise.all(this.#tails.values());
  }
}
