import type { ProgressEvent } from '../../queue/index.ts';

/**
 * Progress edits, throttled: at most one per `intervalMs` per job, always the latest event (trailing
 * edge), carrying the newest preview not shown yet. Progress is lossy by contract, so coalescing is
 * safe; what to do with an edit (and whether the job has finished meanwhile) is the caller's.
 */
export interface ProgressThrottleOptions {
  /** Least time between two edits of one job. */
  readonly intervalMs: number;
  readonly now: () => number;
  /** Called with the event to show, at most once per interval per job. */
  readonly show: (event: ProgressEvent) => void;
}

interface JobProgress {
  latest?: ProgressEvent | undefined;
  /** Newest preview not shown yet: previews come in their own events, which a plain step event may follow. */
  preview?: Buffer | undefined;
  lastShownAt: number;
  timer?: NodeJS.Timeout | undefined;
  touchedAt: number;
}

/** A job with no progress for this long, and no edit pending, is forgotten. */
const STATE_TTL_MS = 10 * 60_000;

export class ProgressThrottle {
  readonly #options: ProgressThrottleOptions;
  readonly #jobs = new Map<string, JobProgress>();

  constructor(options: ProgressThrottleOptions) {
    this.#options = options;
  }

  push(event: ProgressEvent): void {
    const now = this.#options.now();
    let state = this.#jobs.get(event.jobId);
    if (state === undefined) {
      this.#prune(now);
      state = { lastShownAt: 0, touchedAt: now };
      this.#jobs.set(event.jobId, state);
    }
    state.latest = event;
    if (event.preview !== undefined) state.preview = event.preview;
    state.touchedAt = now;
    if (state.timer !== undefined) return;
    const wait = Math.max(0, state.lastShownAt + this.#options.intervalMs - now);
    const current = state;
    current.timer = setTimeout(() => {
      current.timer = undefined;
      const latest = current.latest;
      const preview = latest?.preview ?? current.preview;
      current.latest = undefined;
      current.preview = undefined;
      if (latest === undefined) return;
      current.lastShownAt = this.#options.now();
      this.#options.show(preview === undefined ? latest : { ...latest, preview });
    }, wait);
  }

  /** Drops a job's pending edit (its result arrived: nothing may overwrite it). */
  forget(jobId: string): void {
    const state = this.#jobs.get(jobId);
    if (state?.timer !== undefined) clearTimeout(state.timer);
    this.#jobs.delete(jobId);
  }

  close(): void {
    for (const state of this.#jobs.values()) if (state.timer !== undefined) clearTimeout(state.timer);
    this.#jobs.clear();
  }

  #prune(now: number): void {
    for (const [id, state] of this.#jobs) {
      if (now - state.touchedAt > STATE_TTL_MS && state.timer === undefined) this.#jobs.delete(id);
    }
  }
}
