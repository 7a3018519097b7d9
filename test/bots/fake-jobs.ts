import { ErrorCode, UserError } from '../../core/errors.ts';
import { jobIdFor, parseJobSpec, type Surface } from '../../core/jobspec.ts';
import type {
  CancelBy,
  DeliveryContext,
  DeliveryEvent,
  GridRecord,
  JobStatus,
  Jobs,
  ProgressEvent,
  SubmitResult,
  Subscription,
} from '../../queue/types.ts';

type DeliveryHandler = (event: DeliveryEvent, ctx: DeliveryContext) => Promise<void>;

/**
 * An in-memory `Jobs` for service unit tests: the same interface as queue/, with test hooks to finish,
 * fail or expire a job and to push progress. Deliveries run like the real ones: a throwing handler is
 * retried (immediately, here) and `ctx.once` steps persist across attempts.
 */
export class FakeJobs implements Jobs {
  readonly records = new Map<string, GridRecord>();
  readonly grids = new Map<string, Buffer>();
  readonly images = new Map<string, Buffer[]>();
  readonly submitted: string[] = [];
  readonly onceSteps = new Map<string, string>();
  readonly #delivery = new Map<Surface, DeliveryHandler>();
  readonly #progress = new Map<Surface, (event: ProgressEvent) => void>();
  /** Set to make the next submit throw. */
  submitError: Error | undefined;
  now = 1_700_000_000_000;

  async submit(input: Parameters<Jobs['submit']>[0]): Promise<SubmitResult> {
    if (this.submitError !== undefined) {
      const error = this.submitError;
      this.submitError = undefined;
      throw error;
    }
    const parsed = parseJobSpec(input);
    if (!parsed.ok) throw new Error(`invalid spec: ${parsed.message}`);
    const spec = parsed.spec;
    const id = jobIdFor(spec.origin.surface, spec.origin.interactionId);
    const existing = this.records.get(id);
    if (existing !== undefined) return { jobId: id, seeds: existing.seeds, position: 0, duplicate: true };
    const position = [...this.records.values()].filter((r) => r.status.state === 'queued').length;
    this.records.set(id, {
      id,
      spec,
      prompts: spec.prompts,
      seeds: spec.seeds,
      owner: { surface: spec.origin.surface, user: spec.origin.user },
      surface: spec.origin.surface,
      channel: spec.origin.channel,
      messageRef: spec.origin.messageRef,
      status: { state: 'queued', position },
      attempts: 0,
      timings: { queuedAt: this.now },
      createdAt: this.now,
      expiresAt: this.now + 86_400_000,
    });
    this.submitted.push(id);
    return { jobId: id, seeds: spec.seeds, position, duplicate: false };
  }

  async status(id: string): Promise<JobStatus | null> {
    return this.records.get(id)?.status ?? null;
  }

  async cancel(id: string, by: CancelBy): Promise<JobStatus> {
    const record = this.records.get(id);
    if (record === undefined) throw new UserError(ErrorCode.NotFound, 'That job does not exist.');
    if (record.status.state !== 'queued' && record.status.state !== 'running') {
      throw new UserError(ErrorCode.AlreadyFinished, 'This job has already finished.');
    }
    const status: JobStatus = { state: 'cancelled', by: `${by.surface}:${by.user}` };
    const updated = { ...record, status };
    this.records.set(id, updated);
    await this.deliver({ type: 'cancelled', record: updated, by: `${by.surface}:${by.user}` });
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
    const record = this.records.get(id);
    if (record === undefined) return;
    this.records.set(id, { ...record, messageRef: { ...record.messageRef, ...patch } });
  }

  onDelivery(surface: Surface, handler: DeliveryHandler): Subscription {
    this.#delivery.set(surface, handler);
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
      ...record,
      status: { state: 'done' },
      resultKeys: { grid: `${id}:grid`, images: result.images.map((_, i) => `${id}:${i}`) },
      ...(result.truncatedTokens === undefined ? {} : { truncatedTokens: result.truncatedTokens }),
      ...(result.demo === undefined ? {} : { model: { name: 'demo-tiny', demo: result.demo } }),
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
    const updated = { ...record, status };
    this.records.set(id, updated);
    await this.deliver({ type: 'failed', record: updated, ...failure });
  }

  setRunning(id: string): void {
    this.records.set(id, { ...this.#get(id), status: { state: 'running', step: 0, total: 1 } });
  }

  expire(id: string): void {
    this.records.delete(id);
    this.grids.delete(id);
    this.images.delete(id);
  }

  progress(event: Omit<ProgressEvent, 'surface'>): void {
    const record = this.#get(event.jobId);
    this.#progress.get(record.surface)?.({ ...event, surface: record.surface });
  }

  /** Runs the surface's delivery handler like the durable queue: retries on throw, `once` persists. */
  async deliver(event: DeliveryEvent, attempts = 3): Promise<void> {
    const handler = this.#delivery.get(event.record.surface);
    if (handler === undefined) return;
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

  #get(id: string): GridRecord {
    const record = this.records.get(id);
    if (record === undefined) throw new Error(`no record ${id}`);
    return record;
  }
}
