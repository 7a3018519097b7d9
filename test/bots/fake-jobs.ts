import { jobIdFor, parseJobSpec, type Surface } from '../../core/jobspec.ts';
import {
  alreadyEndedError,
  assertMessageRefPatch,
  type CancelBy,
  checkInitUpload,
  type DeliveryContext,
  type DeliveryEvent,
  type GridRecord,
  initImageGoneError,
  invalidSpecError,
  JOBS_DEFAULTS,
  type JobStatus,
  type Jobs,
  jobGoneError,
  type ProgressEvent,
  queueFullError,
  type SubmitOptions,
  type SubmitResult,
  type Subscription,
  userCapError,
} from '../../queue/index.ts';
import { mergeMessageRef, recordSpec } from '../../queue/records.ts';

type DeliveryHandler = (event: DeliveryEvent, ctx: DeliveryContext) => Promise<void>;

/** Retry-After the real jobs give before any job has been timed (queue/jobs.ts, about one average job). */
const UNTIMED_RETRY_AFTER_S = 30;

/**
 * An in-memory `Jobs` for service unit tests: the same interface as queue/, with test hooks to finish,
 * fail or expire a job and to push progress. It answers like the Redis-backed jobs (the same coded
 * errors and texts, from queue/job-errors.ts; test/contract checks both against one suite).
 * Deliveries run like the real ones: a throwing handler is retried (immediately, here) and
 * `ctx.once` steps persist across attempts. A cancel delivers at once, where the real queue delivers
 * a running job's cancel when its worker stops it.
 */
export class FakeJobs implements Jobs {
  readonly records = new Map<string, GridRecord>();
  readonly grids = new Map<string, Buffer>();
  readonly images = new Map<string, Buffer[]>();
  readonly submitted: string[] = [];
  /** Uploaded init images by SHA-256, as the real queue stores them (once per content). */
  readonly initImages = new Map<string, Uint8Array>();
  readonly onceSteps = new Map<string, string>();
  readonly #delivery = new Map<Surface, DeliveryHandler>();
  readonly #progress = new Map<Surface, (event: ProgressEvent) => void>();
  /** Deliveries for a surface with no handler yet, handed over when one subscribes. */
  #pending: { event: DeliveryEvent; attempts: number }[] = [];
  /** Deliveries handed over late whose every attempt threw (the real queue would go on retrying). */
  readonly undelivered: { event: DeliveryEvent; error: unknown }[] = [];
  /** Set to make the next submit throw. */
  submitError: Error | undefined;
  now = 1_700_000_000_000;
  readonly #perUser: number;
  readonly #queueDepth: number;

  constructor(options: { limits?: { perUser?: number; queueDepth?: number } } = {}) {
    this.#perUser = options.limits?.perUser ?? JOBS_DEFAULTS.perUser;
    this.#queueDepth = options.limits?.queueDepth ?? JOBS_DEFAULTS.queueDepth;
  }

  async submit(input: Parameters<Jobs['submit']>[0], options: SubmitOptions = {}): Promise<SubmitResult> {
    if (this.submitError !== undefined) {
      const error = this.submitError;
      this.submitError = undefined;
      throw error;
    }
    const parsed = parseJobSpec(input);
    if (!parsed.ok) throw invalidSpecError(parsed.message);
    const spec = parsed.spec;
    // Like the real queue: the picture is checked and stored (or must still be stored) before queueing.
    await checkInitUpload(spec, options.initImage);
    if (spec.init?.from === 'upload') {
      if (options.initImage !== undefined) this.initImages.set(spec.init.sha256, options.initImage);
      else if (!this.initImages.has(spec.init.sha256)) throw initImageGoneError(spec.init.sha256);
    }
    const id = jobIdFor(spec.origin.surface, spec.origin.interactionId);
    const existing = this.records.get(id);
    if (existing !== undefined) {
      const position = existing.state.status.state === 'queued' ? this.#position(id) : 0;
      return { jobId: id, seeds: existing.spec.seeds, position, duplicate: true };
    }
    const unfinished = [...this.records.values()].filter((r) => !isEnded(r.state.status));
    const mine = unfinished.filter(
      (r) => r.spec.origin.surface === spec.origin.surface && r.spec.origin.user === spec.origin.user,
    ).length;
    if (mine >= this.#perUser) {
      throw userCapError(mine, this.#perUser, UNTIMED_RETRY_AFTER_S, { id, user: spec.origin.user });
    }
    if (unfinished.length >= this.#queueDepth) {
      throw queueFullError(unfinished.length, this.#queueDepth, UNTIMED_RETRY_AFTER_S, { id });
    }
    this.records.set(id, {
      id,
      spec: recordSpec(spec),
      state: {
        // As stored by the real queue; status() answers the live position.
        status: { state: 'queued', position: 0 },
        messageRef: spec.origin.messageRef,
        attempts: 0,
        timings: { queuedAt: this.now },
        expiresAt: this.now + 86_400_000,
      },
    });
    this.submitted.push(id);
    return { jobId: id, seeds: spec.seeds, position: this.#position(id), duplicate: false };
  }

  async status(id: string): Promise<JobStatus | null> {
    const status = this.records.get(id)?.state.status;
    if (status === undefined) return null;
    return status.state === 'queued' ? { state: 'queued', position: this.#position(id) } : status;
  }

  async cancel(id: string, by: CancelBy): Promise<JobStatus> {
    const record = this.records.get(id);
    if (record === undefined) throw jobGoneError(id);
    if (isEnded(record.state.status)) throw alreadyEndedError(id, record.state.status.state);
    // The real queue records the user id alone (the surface is the job's).
    const status: JobStatus = { state: 'cancelled', by: by.user };
    const updated = withStatus(record, status);
    this.records.set(id, updated);
    await this.deliver({ type: 'cancelled', record: updated, by: by.user });
    return status;
  }

  async record(id: string): Promise<GridRecord | null> {
    return this.records.get(id) ?? null;
  }

  async gridPng(id: string): Promise<Buffer | null> {
    return this.grids.get(id) ?? null;
  }

  async imagePng(id: string, index: number): Promise<Buffer | null> {
    return this.images.get(id)?.[index] ?? null;
  }

  async updateMessageRef(id: string, patch: Readonly<Record<string, string>>): Promise<void> {
    assertMessageRefPatch(patch);
    if (Object.keys(patch).length === 0) return;
    const record = this.records.get(id);
    if (record === undefined) throw jobGoneError(id);
    this.records.set(id, {
      ...record,
      state: { ...record.state, messageRef: mergeMessageRef(record.state.messageRef, patch) },
    });
  }

  onDelivery(surface: Surface, handler: DeliveryHandler): Subscription {
    this.#delivery.set(surface, handler);
    // Like the durable queue: what ended while nobody listened is delivered now.
    const waiting = this.#pending.filter((p) => p.event.record.spec.origin.surface === surface);
    this.#pending = this.#pending.filter((p) => p.event.record.spec.origin.surface !== surface);
    for (const { event, attempts } of waiting) {
      queueMicrotask(() => {
        this.deliver(event, attempts).catch((error: unknown) => this.undelivered.push({ event, error }));
      });
    }
    return { close: async () => void this.#delivery.delete(surface) };
  }

  onProgress(surface: Surface, handler: (event: ProgressEvent) => void): Subscription {
    this.#progress.set(surface, handler);
    return { close: async () => void this.#progress.delete(surface) };
  }

  async close(): Promise<void> {}

  // ——— test hooks ———

  /** Marks the job done with the given grid/images and delivers it (retrying a throwing handler up to `attempts`). */
  async complete(
    id: string,
    result: { grid: Buffer; images: Buffer[]; truncatedTokens?: number[]; demo?: boolean },
    attempts = 3,
  ): Promise<void> {
    const record = this.#get(id);
    const updated: GridRecord = {
      ...withStatus(record, { state: 'done' }),
      result: {
        resultKeys: { grid: `${id}:grid`, images: result.images.map((_, i) => `${id}:${i}`) },
        truncatedTokens: result.truncatedTokens ?? result.images.map(() => 0),
        model: { name: 'demo-tiny', demo: result.demo ?? false },
      },
    };
    this.records.set(id, updated);
    this.grids.set(id, result.grid);
    this.images.set(id, result.images);
    await this.deliver(
      {
        type: 'done',
        record: updated,
        grid: result.grid,
        image: async (i) => result.images[i] ?? Buffer.alloc(0),
      },
      attempts,
    );
  }

  async fail(id: string, failure: { reason: string; errorId?: string; userFacing: boolean }): Promise<void> {
    const record = this.#get(id);
    const status: JobStatus = { state: 'failed', ...failure };
    const updated = withStatus(record, status);
    this.records.set(id, updated);
    await this.deliver({ type: 'failed', record: updated, ...failure });
  }

  setRunning(id: string): void {
    const record = this.#get(id);
    this.records.set(id, withStatus(record, { state: 'running', step: 0, total: record.spec.steps }));
  }

  expire(id: string): void {
    this.records.delete(id);
    this.grids.delete(id);
    this.images.delete(id);
  }

  progress(event: Omit<ProgressEvent, 'surface'>): void {
    const record = this.#get(event.jobId);
    this.#progress.get(record.spec.origin.surface)?.({ ...event, surface: record.spec.origin.surface });
  }

  /** Runs the surface's delivery handler like the durable queue: retries on throw, `once` persists. */
  async deliver(event: DeliveryEvent, attempts = 3): Promise<void> {
    const handler = this.#delivery.get(event.record.spec.origin.surface);
    if (handler === undefined) {
      this.#pending.push({ event, attempts });
      return;
    }
    let lastError: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const ctx: DeliveryContext = {
        attempt,
        once: async (step, run) => {
          const key = `${event.record.id}:${event.type}:${step}`;
          const done = this.onceSteps.get(key);
          if (done !== undefined) return done;
          const value = await run();
          this.onceSteps.set(key, value);
          return value;
        },
      };
      try {
        await handler(event, ctx);
        return;
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError;
  }

  /** Jobs queued before this one that are still queued (the real queue: jobs ahead in the wait list). */
  #position(id: string): number {
    let ahead = 0;
    for (const [other, record] of this.records) {
      if (other === id) return ahead;
      if (record.state.status.state === 'queued') ahead++;
    }
    return ahead;
  }

  #get(id: string): GridRecord {
    const record = this.records.get(id);
    if (record === undefined) throw new Error(`no record ${id}`);
    return record;
  }
}

function isEnded(status: JobStatus): boolean {
  return status.state !== 'queued' && status.state !== 'running';
}

function withStatus(record: GridRecord, status: JobStatus): GridRecord {
  return { ...record, state: { ...record.state, status } };
}
