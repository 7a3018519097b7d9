import type { InteractionReply } from '../surface.ts';
import type { ServiceLog } from './settings.ts';

/**
 * Back-pressure for interactions, the only place it is decided (adapters just acknowledge on
 * receipt and hand over). Acknowledgements have a hard deadline (Discord and Slack: 3 s) and queueing
 * has none, and all of it shares one event loop, so:
 * - new-job work (Redis, chat-API calls) waits until no acknowledgement is in flight, so a burst is
 *   acknowledged first; bounded by `priorityMs`, so sustained load cannot starve submissions;
 * - at most `maxActive` interactions do that work at once; the rest wait their turn, already
 *   acknowledged, so a burst's round trips never crowd out the acks of requests still arriving.
 */
export interface AckGateOptions {
  /**
   * Longest time new-job work waits for in-flight acknowledgements.
   * @defaultValue 250
   */
  readonly priorityMs?: number;
  /**
   * Interactions doing Redis and chat-API work at once.
   * @defaultValue 8
   */
  readonly maxActive?: number;
}

export const ACK_GATE_DEFAULTS = { priorityMs: 250, maxActive: 8 } as const;

export class AckGate {
  readonly #log: ServiceLog;
  readonly #priorityMs: number;
  readonly #maxActive: number;
  #pendingAcks = 0;
  readonly #ackWaiters: (() => void)[] = [];
  #active = 0;
  readonly #slotWaiters: (() => void)[] = [];

  constructor(log: ServiceLog, options: AckGateOptions = {}) {
    this.#log = log;
    this.#priorityMs = options.priorityMs ?? ACK_GATE_DEFAULTS.priorityMs;
    this.#maxActive = Math.max(1, options.maxActive ?? ACK_GATE_DEFAULTS.maxActive);
  }

  /** Starts the acknowledgement now; resolves to whether it worked (a redelivered interaction fails it). */
  accept(reply: InteractionReply): Promise<boolean> {
    this.#pendingAcks++;
    return call(() => reply.accept())
      .then(
        () => true,
        (error: unknown) => {
          this.#log.warn({ err: error }, 'acknowledging the interaction failed');
          return false;
        },
      )
      .finally(() => {
        this.#pendingAcks--;
        if (this.#pendingAcks === 0) for (const wake of this.#ackWaiters.splice(0)) wake();
      });
  }

  /** Resolves once no acknowledgement is in flight, or after `priorityMs`, whichever is first. */
  async acksSettled(): Promise<void> {
    if (this.#pendingAcks === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.#ackWaiters.push(resolve);
      timer = setTimeout(resolve, this.#priorityMs);
    });
    clearTimeout(timer);
  }

  /** Runs an interaction's work in one of `maxActive` slots, after in-flight acknowledgements. */
  async work<T>(run: () => Promise<T>): Promise<T> {
    if (this.#active >= this.#maxActive)
      await new Promise<void>((resolve) => this.#slotWaiters.push(resolve));
    else this.#active++;
    try {
      await this.acksSettled();
      return await run();
    } finally {
      // The slot passes straight to the next waiter (the count stays), or frees up.
      const next = this.#slotWaiters.shift();
      if (next !== undefined) next();
      else this.#active--;
    }
  }

  /** Interactions doing work now, and waiting for a slot (for tests and metrics). */
  get load(): { readonly active: number; readonly waiting: number } {
    return { active: this.#active, waiting: this.#slotWaiters.length };
  }
}

/** Calls an adapter method, turning a synchronous throw into a rejection. */
function call<T>(run: () => Promise<T>): Promise<T> {
  try {
    return run();
  } catch (error) {
    return Promise.reject(error);
  }
}
