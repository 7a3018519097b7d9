/**
 * Liveness and readiness. `/healthz` answers while the process runs; `/readyz` runs every registered
 * check (Redis reachable, model loaded, …) and fails while any check fails or the process is stopping,
 * so a load balancer or compose stops sending work before shutdown.
 */

/** Resolves when ready; throws (or rejects) with a short reason when not. */
export type ReadinessCheck = () => Promise<void> | void;

export interface ReadinessReport {
  readonly ready: boolean;
  readonly checks: Readonly<Record<string, 'ok' | string>>;
}

export interface HealthOptions {
  /** A check that takes longer counts as failed. @defaultValue 2000 */
  readonly checkTimeoutMs?: number;
}

export class Health {
  readonly #checks = new Map<string, ReadinessCheck>();
  readonly #timeoutMs: number;
  #stopping = false;
  readonly startedAt = Date.now();

  constructor(options: HealthOptions = {}) {
    this.#timeoutMs = options.checkTimeoutMs ?? 2000;
  }

  /** Registers (or replaces) a named check. */
  check(name: string, run: ReadinessCheck): this {
    this.#checks.set(name, run);
    return this;
  }

  /** From now on the process reports not ready (it is draining). */
  stopping(): void {
    this.#stopping = true;
  }

  get isStopping(): boolean {
    return this.#stopping;
  }

  async readiness(): Promise<ReadinessReport> {
    const checks: Record<string, string> = {};
    if (this.#stopping) checks.shutdown = 'shutting down';
    await Promise.all(
      [...this.#checks].map(async ([name, run]) => {
        checks[name] = await this.#runOne(run);
      }),
    );
    return { ready: Object.values(checks).every((v) => v === 'ok'), checks };
  }

  async #runOne(run: ReadinessCheck): Promise<string> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.resolve().then(run),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${this.#timeoutMs} ms`)),
            this.#timeoutMs,
          );
        }),
      ]);
      return 'ok';
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      return message === '' ? 'not ready' : message.slice(0, 300);
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  }
}
