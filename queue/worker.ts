import { hostname } from 'node:os';
import { type Job, UnrecoverableError, WaitingError, Worker } from 'bullmq';
import {
  CodedError,
  ErrorCode,
  InternalError,
  isUserError,
  newErrorId,
  reportError,
} from '../core/errors.ts';
import { type JobSpec, parseJobSpec, SURFACES, type Surface } from '../core/jobspec.ts';
import type { Engine, GenerateRequest, GenerateResult, StepProgress } from '../models/engine.ts';
import { encodePng, formatParameters } from '../models/png.ts';
import { closeRedisClient, createRedisClient, type RedisClient, type RedisConnection } from './connection.ts';
import { DELIVERY_DEFAULTS, type DeliveryOptions, DeliveryQueues } from './delivery.ts';
import { composeGrid } from './grid.ts';
import { JOBS_DEFAULTS } from './jobs.ts';
import { GENERATE_QUEUE, type QueueKeys, queueKeys } from './keys.ts';
import type { QueueLogger } from './logger.ts';
import { noopMetrics, type QueueMetrics } from './metrics.ts';
import {
  checkResult,
  decodeRecord,
  type Phases,
  RENDER_JOB,
  type RecordResult,
  type RenderedMessage,
} from './records.ts';
import { FINISH, runScript, START, STORE_IMAGES, stringReply, TRANSITION } from './scripts.ts';
import type { JobState, JobStatus } from './types.ts';

export interface WorkerOptions {
  readonly connection: RedisConnection;
  /** Must match the Jobs side. @defaultValue `'imagine'` */
  readonly prefix?: string;
  /** The engine, or a factory called once at start (the worker then closes it on shutdown). */
  readonly engine: Engine | (() => Promise<Engine>);
  /**
   * Batches run at once by this worker. One per GPU is right for real inference.
   * @defaultValue 1
   */
  readonly concurrency?: number;
  /**
   * Longest time before a job whose worker died (killed, lost its host) is taken over by another
   * running worker. Sets the lock and the stall check below (see `stallSettings`).
   * @defaultValue 30000
   */
  readonly takeoverMs?: number;
  /**
   * How often this worker looks for jobs whose worker died (lock expired) and requeues them.
   * @defaultValue `takeoverMs / 6`
   */
  readonly stalledIntervalMs?: number;
  /**
   * Lock on a running job, renewed every half of it; a killed worker's job is taken over after
   * the lock lapses and the next stall check runs.
   * @defaultValue `takeoverMs / 3`
   */
  readonly lockDurationMs?: number;
  /**
   * Stalls (worker deaths) a job survives before it is failed.
   * @defaultValue 2
   */
  readonly maxStalledCount?: number;
  /**
   * On close (SIGTERM), how long the current job may run on before it is released to another worker.
   * @defaultValue 60000
   */
  readonly shutdownTimeoutMs?: number;
  /** Stored on records and BullMQ jobs. @defaultValue `host:pid` */
  readonly workerId?: string;
  /**
   * Minimum time between latent previews in progress events; 0 disables previews.
   * @defaultValue 2000
   */
  readonly previewEveryMs?: number;
  /**
   * Fallback poll for cancels whose pub/sub message was missed (e.g. during a reconnect).
   * @defaultValue 1000
   */
  readonly cancelPollMs?: number;
  /**
   * How long a grid's PNGs are kept (never longer than its record); a button that needs one later
   * has it made again from the record.
   * @defaultValue 24 h
   */
  readonly imageTtlMs?: number;
  /**
   * Bytes of PNGs kept in Redis for all grids together; past it the oldest are deleted first. 0 = no limit.
   * @defaultValue 1 GiB
   */
  readonly imageStoreMaxBytes?: number;
  /** Retry policy of the deliveries this worker enqueues. */
  readonly delivery?: Pick<DeliveryOptions, 'attempts' | 'backoffMs'>;
  readonly logger: QueueLogger;
  readonly metrics?: QueueMetrics;
  /** Source for error ids. @defaultValue Math.random */
  readonly random?: () => number;
}

export const WORKER_DEFAULTS = {
  prefix: JOBS_DEFAULTS.prefix,
  concurrency: 1,
  takeoverMs: 30_000,
  maxStalledCount: 2,
  shutdownTimeoutMs: 60_000,
  previewEveryMs: 2000,
  cancelPollMs: 1000,
  imageTtlMs: 24 * 3_600_000,
  imageStoreMaxBytes: 1024 * 1024 * 1024,
} as const;

/**
 * BullMQ's lock and stall check for a promised takeover time T. BullMQ takes a dead worker's job
 * at the first stall check that finds it both marked (by an earlier check) and unlocked: with
 * lock L (renewed every L/2) and checks every S (any worker; after the checking worker dies the
 * next check may take up to 2S), that is at most about max(L, 2S) + 2S after the death. L = T/3
 * and S = T/6 bound it by 2T/3, leaving room for timer and CPU delays within T. (BullMQ's default,
 * L = S = T, takes up to about 3T: 53 s measured at 30 s.)
 */
export function stallSettings(takeoverMs: number): { lockDurationMs: number; stalledIntervalMs: number } {
  return {
    lockDurationMs: Math.max(1, Math.round(takeoverMs / 3)),
    stalledIntervalMs: Math.max(1, Math.round(takeoverMs / 6)),
  };
}

export interface QueueWorker {
  readonly id: string;
  readonly engine: Engine;
  /** Ids of the jobs this worker is running now. */
  active(): readonly string[];
  /**
   * Stops taking jobs and lets the current ones finish; past `shutdownTimeoutMs` (or at once with
   * `releaseNow`) running jobs are aborted and put back at the head of the queue for another worker.
   */
  close(options?: { readonly releaseNow?: boolean }): Promise<void>;
}

interface Running {
  readonly controller: AbortController;
  reason: 'cancel' | 'shutdown' | undefined;
}

const PROGRESS_TTL_MS = 3_600_000;

/** Thrown out of the engine when its signal aborted (CodedError E_CANCELLED, or a DOM AbortError). */
function isAbortError(error: unknown): boolean {
  return (
    (error instanceof CodedError && error.code === ErrorCode.Cancelled) ||
    (error instanceof Error && error.name === 'AbortError')
  );
}

function requestFor(spec: JobSpec): GenerateRequest {
  return {
    prompts: spec.prompts,
    negative: spec.negative,
    seeds: spec.seeds,
    scheduler: spec.sampler,
    steps: spec.steps,
    guidance: spec.guidance,
    width: spec.width,
    height: spec.height,
  };
}

/**
 * Progress in the user's steps. The engine counts UNet evaluations, which some samplers make more
 * of than the steps asked for (PNDM: steps + 1), so a 50-step job would show "of 51" while running
 * and "50" when done. Every surface shows the step count the user asked for, from start to end.
 */
export function userProgress(
  evals: { step: number; total: number },
  steps: number,
): { step: number; total: number } {
  if (evals.total <= 0) return { step: 0, total: steps };
  if (evals.step >= evals.total) return { step: steps, total: steps };
  return { step: Math.min(steps, Math.round((evals.step * steps) / evals.total)), total: steps };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/** Starts a generation worker on the shared Redis. Resolves once it is connected and taking jobs. */
export async function startWorker(options: WorkerOptions): Promise<QueueWorker> {
  const prefix = options.prefix ?? WORKER_DEFAULTS.prefix;
  const concurrency = options.concurrency ?? WORKER_DEFAULTS.concurrency;
  const shutdownTimeoutMs = options.shutdownTimeoutMs ?? WORKER_DEFAULTS.shutdownTimeoutMs;
  const previewEveryMs = options.previewEveryMs ?? WORKER_DEFAULTS.previewEveryMs;
  const cancelPollMs = options.cancelPollMs ?? WORKER_DEFAULTS.cancelPollMs;
  const imageTtlMs = options.imageTtlMs ?? WORKER_DEFAULTS.imageTtlMs;
  const imageStoreMaxBytes = options.imageStoreMaxBytes ?? WORKER_DEFAULTS.imageStoreMaxBytes;
  const workerId = options.workerId ?? `${hostname()}:${process.pid}`;
  const random = options.random ?? Math.random;
  const { logger } = options;
  const metrics = options.metrics ?? noopMetrics;
  const keys: QueueKeys = queueKeys(prefix);

  const ownsEngine = typeof options.engine === 'function';
  const engine = typeof options.engine === 'function' ? await options.engine() : options.engine;

  // Worker connections retry forever across Redis restarts instead of failing jobs.
  const client: RedisClient = createRedisClient(options.connection, { blocking: true });
  client.on('error', (error) => logger.warn({ err: error, workerId }, 'redis connection error (worker)'));
  const subscriber: RedisClient = createRedisClient(options.connection, { blocking: true });
  subscriber.on('error', (error) => logger.warn({ err: error, workerId }, 'redis connection error (cancel)'));
  const deliveries = new DeliveryQueues(client, prefix, { ...DELIVERY_DEFAULTS, ...options.delivery });
  const running = new Map<string, Running>();

  function abort(id: string, reason: 'cancel' | 'shutdown'): void {
    const entry = running.get(id);
    if (entry === undefined || entry.controller.signal.aborted) return;
    entry.reason = reason;
    entry.controller.abort(new CodedError(ErrorCode.Cancelled, `job ${id} ${reason}`));
  }

  // Cancels come from any process: pub/sub for speed, a poll of the record state as a safety net.
  subscriber.on('message', (_channel: string, id: string) => abort(id, 'cancel'));
  await subscriber.subscribe(keys.cancelChannel);
  const poll = setInterval(() => {
    for (const id of running.keys()) {
      client
        .hget(keys.record(id), 'state')
        .then((state) => {
          if (state === 'cancelled') abort(id, 'cancel');
        })
        .catch(() => {});
    }
  }, cancelPollMs);
  poll.unref();

  /** Ends the record (a no-op on one already ended), frees its slots, and enqueues its delivery. */
  async function settle(
    id: string,
    surface: Surface | undefined,
    state: 'done' | 'failed' | 'cancelled',
    status: JobStatus,
    phases?: Phases,
    result?: RecordResult,
  ): Promise<JobState | 'missing'> {
    const [final = 'missing', changed] = stringReply(
      await runScript(
        client,
        FINISH,
        [keys.record(id), keys.unfinished, keys.progress(id)],
        [
          id,
          state,
          JSON.stringify(status),
          phases === undefined ? '' : JSON.stringify(phases),
          result === undefined ? '' : JSON.stringify(result),
          Date.now(),
        ],
      ),
    );
    // Counted as soon as the record says so (before the delivery round trip), so /metrics never lags a
    // status that already reads done. Cancels are counted where they happen (Jobs.cancel); re-settling
    // an ended job counts nothing.
    if (changed === '1' && (final === 'done' || final === 'failed')) metrics.jobFinished(final);
    if (final !== 'missing' && surface !== undefined) {
      await deliveries.enqueue(id, surface);
    }
    return final as JobState | 'missing';
  }

  /** The surface of a record, read leniently (used when the job payload itself is unreadable). */
  async function recordSurface(id: string): Promise<Surface | undefined> {
    // `spec` in the record layout of now, `base` in the one before (see upgradeRecordHash).
    const [spec, base] = await client.hmget(keys.record(id), 'spec', 'base');
    const text = spec ?? base;
    if (text === null || text === undefined) return undefined;
    try {
      const parsed = JSON.parse(text) as { origin?: { surface?: unknown }; surface?: unknown };
      const surface = spec === null ? parsed.surface : parsed.origin?.surface;
      return SURFACES.find((s) => s === surface);
    } catch {
      return undefined;
    }
  }

  function publishProgress(id: string, surface: Surface, progress: StepProgress, preview?: Buffer): void {
    const message = JSON.stringify({
      jobId: id,
      surface,
      step: progress.step,
      total: progress.total,
      ...(preview === undefined ? {} : { preview: preview.toString('base64') }),
    });
    const pipeline = client.pipeline();
    if (preview === undefined)
      pipeline.set(keys.progress(id), `${progress.step}/${progress.total}`, 'PX', PROGRESS_TTL_MS);
    pipeline.publish(keys.progressChannel(surface), message);
    pipeline
      .exec()
      .catch((error: unknown) => logger.debug({ err: error, jobId: id }, 'progress publish failed'));
  }

  async function updateStats(jobMs: number): Promise<void> {
    const prev = Number((await client.hget(keys.stats, 'avgJobMs')) ?? Number.NaN);
    const avg = Number.isFinite(prev) && prev > 0 ? prev * 0.8 + jobMs * 0.2 : jobMs;
    await client.hset(keys.stats, 'avgJobMs', String(Math.round(avg)));
  }

  async function storeResults(id: string, result: GenerateResult, spec: JobSpec, expireAt: number) {
    const composeStart = performance.now();
    const parameters = result.images.map((image, k) =>
      formatParameters({
        prompt: image.prompt,
        negative: spec.negative,
        steps: spec.steps,
        sampler: spec.sampler,
        guidance: spec.guidance,
        seed: spec.seeds[k] ?? image.seed,
        width: image.width,
        height: image.height,
        model: engine.info.name,
        generator: result.generator,
      }),
    );
    const [grid, ...pngs] = await Promise.all([
      composeGrid(result.images, parameters[0]),
      ...result.images.map((image, k) => encodePng(image, parameters[k])),
    ]);
    const composeMs = performance.now() - composeStart;
    const storeStart = performance.now();
    const [total, evicted] = stringReply(
      await runScript(
        client,
        STORE_IMAGES,
        [keys.imageIndex, keys.imageSizes, keys.imageBytes],
        [id, Date.now(), expireAt, imageStoreMaxBytes, keys.resultPrefix, pngs.length, grid, ...pngs],
      ),
    );
    if (evicted !== undefined && evicted !== '0') {
      logger.info(
        { jobId: id, evicted: Number(evicted), totalBytes: Number(total) },
        'image budget: oldest PNGs dropped',
      );
    }
    const storeMs = performance.now() - storeStart;
    const recordResult: RecordResult = checkResult(id, {
      resultKeys: { grid: keys.grid(id), images: pngs.map((_, k) => keys.image(id, k)) },
      truncatedTokens: result.truncatedTokens,
      model: { name: engine.info.name, demo: engine.info.demo },
      ...(result.images.some((image) => image.nsfw !== undefined)
        ? { nsfw: result.images.map((image) => image.nsfw === true) }
        : {}),
    });
    return { composeMs, storeMs, recordResult };
  }

  function publishRendered(message: RenderedMessage): Promise<unknown> {
    return client.publish(keys.renderedChannel, JSON.stringify(message));
  }

  /**
   * Makes a finished grid's PNGs again from its record (they were dropped by IMAGE_TTL or the
   * budget): same spec, same seeds, same model, so the same images. The record is not touched.
   */
  async function processRender(job: Job<unknown, string>, token?: string): Promise<string> {
    const data = job.data as { render?: unknown };
    const id = typeof data?.render === 'string' ? data.render : undefined;
    if (id === undefined) throw new UnrecoverableError('render job without a grid id');
    const [hash, pttl] = await Promise.all([client.hgetall(keys.record(id)), client.pttl(keys.record(id))]);
    const record = decodeRecord(id, hash);
    if (record === null || record.state.status.state !== 'done') {
      await publishRendered({ id, ok: false, reason: 'This grid has expired.', userFacing: true });
      return 'gone';
    }
    const madeBy = record.result?.model;
    if (madeBy !== undefined && madeBy.name !== engine.info.name) {
      // Another model would give other pictures for the same seeds: refuse rather than pretend.
      const reason = `This grid's images were made with the model ${madeBy.name}, which is no longer loaded, so they can't be made again.`;
      logger.warn(
        { jobId: id, workerId, model: madeBy.name, loaded: engine.info.name },
        'cannot re-render: other model',
      );
      await publishRendered({ id, ok: false, reason, userFacing: true });
      return 'other-model';
    }
    const key = `render:${id}`;
    const entry: Running = { controller: new AbortController(), reason: undefined };
    running.set(key, entry);
    try {
      const result = await engine.generate(requestFor(record.spec), { signal: entry.controller.signal });
      const now = Date.now();
      const expireAt = now + Math.min(imageTtlMs, pttl > 0 ? pttl : JOBS_DEFAULTS.recordTtlMs);
      await storeResults(id, result, record.spec, expireAt);
      await publishRendered({ id, ok: true });
      logger.info({ jobId: id, workerId }, 'PNGs made again from the record');
      return 'rendered';
    } catch (error) {
      if (entry.reason === 'shutdown') {
        await job.moveToWait(token);
        throw new WaitingError();
      }
      const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1) || isUserError(error);
      if (last) {
        const shown = reportError(logger, error, { jobId: id, workerId, where: 're-render' });
        await publishRendered({
          id,
          ok: false,
          reason: isUserError(error) ? error.message : `error id ${shown.errorId ?? 'unknown'}`,
          userFacing: isUserError(error),
        });
        throw new UnrecoverableError(error instanceof Error ? error.message : String(error));
      }
      throw error;
    } finally {
      running.delete(key);
    }
  }

  async function processJob(job: Job<unknown, string>, token?: string): Promise<string> {
    if (job.name === RENDER_JOB) return processRender(job, token);
    const id = job.id;
    if (id === undefined) throw new UnrecoverableError('job without id');
    const parsed = parseJobSpec(job.data);
    if (!parsed.ok) {
      // Both sides validate; a payload that fails here was tampered with or comes from another version.
      const reason = `That request can't be run: ${parsed.message}`;
      reportError(logger, new InternalError(ErrorCode.InvalidRequest, reason), { jobId: id, workerId });
      await settle(id, await recordSurface(id), 'failed', { state: 'failed', reason, userFacing: true });
      throw new UnrecoverableError(reason);
    }
    const spec = parsed.spec;
    const surface = spec.origin.surface;
    const now = Date.now();
    const reply = stringReply(
      await runScript(
        client,
        START,
        [keys.record(id), keys.progress(id)],
        [
          workerId,
          now,
          job.attemptsStarted,
          JSON.stringify({ state: 'running', step: 0, total: spec.steps }),
        ],
      ),
    );
    const [outcome = ''] = reply;
    if (outcome === 'missing') {
      logger.warn({ jobId: id, workerId }, 'job dropped: its grid record has expired or was never written');
      throw new UnrecoverableError('grid record missing');
    }
    if (outcome !== 'run') {
      // Already ended (cancelled while queued, or ended by a worker that died before acking):
      // make sure its slots are free and its delivery is queued, then ack.
      await settle(id, surface, outcome as 'done' | 'failed' | 'cancelled', {
        state: 'cancelled',
        by: 'system',
      });
      return outcome;
    }
    const queuedAt = Number(reply[1]);
    const startedAt = Number(reply[2]);
    // PNGs are kept IMAGE_TTL, never longer than the record (whose TTL starts when this job ends).
    const recordTtl = Number(reply[3]);
    const expireAt = now + Math.min(imageTtlMs, recordTtl > 0 ? recordTtl : JOBS_DEFAULTS.recordTtlMs);
    if (startedAt === now) metrics.observePhase('queueWait', Math.max(0, startedAt - queuedAt));

    const entry: Running = { controller: new AbortController(), reason: undefined };
    running.set(id, entry);
    const attemptStart = performance.now();
    let lastPreviewAt = performance.now();
    let previewBusy = false;
    try {
      const result = await engine.generate(requestFor(spec), {
        signal: entry.controller.signal,
        onStep: (evals) => {
          const progress = { ...evals, ...userProgress(evals, spec.steps) };
          publishProgress(id, surface, progress);
          const t = performance.now();
          if (
            previewEveryMs > 0 &&
            !previewBusy &&
            progress.step < progress.total &&
            t - lastPreviewAt >= previewEveryMs
          ) {
            lastPreviewAt = t;
            previewBusy = true;
            encodePng(evals.preview(0))
              .then((png) => publishProgress(id, surface, progress, png))
              .catch((error: unknown) => logger.debug({ err: error, jobId: id }, 'preview failed'))
              .finally(() => {
                previewBusy = false;
              });
          }
        },
      });
      const { composeMs, storeMs, recordResult } = await storeResults(id, result, spec, expireAt);
      const timings = result.timings;
      for (const ms of timings.stepMs) metrics.stepTime(ms);
      const phases: Phases = {
        queueWait: Math.max(0, startedAt - queuedAt),
        textEncode: round(timings.tokenizeMs + timings.textEncodeMs),
        denoise: round(timings.stepMs.reduce((a, b) => a + b, 0)),
        decode: round(timings.decodeMs + (timings.safetyMs ?? 0)),
        compose: round(composeMs),
        store: round(storeMs),
      };
      metrics.observePhase('textEncode', phases.textEncode ?? 0);
      metrics.observePhase('denoise', phases.denoise ?? 0);
      metrics.observePhase('decode', phases.decode ?? 0);
      metrics.observePhase('compose', composeMs);
      metrics.observePhase('store', storeMs);
      const final = await settle(id, surface, 'done', { state: 'done' }, phases, recordResult);
      await updateStats(performance.now() - attemptStart).catch(() => {});
      logger.info(
        { jobId: id, workerId, state: final, phases, attempt: job.attemptsStarted },
        'job finished',
      );
      return final;
    } catch (error) {
      if (entry.reason === 'shutdown') {
        // Released for another worker: back to queued, at the head of the wait list.
        await runScript(
          client,
          TRANSITION,
          [keys.record(id)],
          ['running', 'queued', JSON.stringify({ state: 'queued', position: 0 })],
        );
        await job.moveToWait(token);
        logger.info({ jobId: id, workerId }, 'job released on shutdown');
        throw new WaitingError();
      }
      if (entry.reason === 'cancel' || isAbortError(error)) {
        const final = await settle(id, surface, 'cancelled', { state: 'cancelled', by: 'system' });
        logger.info({ jobId: id, workerId, state: final }, 'job stopped: cancelled');
        return final;
      }
      if (isUserError(error)) {
        // The engine says the spec can't be served (impossible size…): no retry, the user is told why.
        reportError(logger, error, { jobId: id, workerId });
        await settle(id, surface, 'failed', { state: 'failed', reason: error.message, userFacing: true });
        throw new UnrecoverableError(error.message);
      }
      const maxAttempts = job.opts.attempts ?? 1;
      const unrecoverable = error instanceof UnrecoverableError;
      const final = unrecoverable || job.attemptsMade + 1 >= maxAttempts;
      const message = error instanceof Error ? error.message : String(error);
      if (!final) {
        logger.warn(
          { jobId: id, workerId, attempt: job.attemptsMade + 1, maxAttempts, err: error },
          'job failed; will retry',
        );
        metrics.retry();
        await runScript(
          client,
          TRANSITION,
          [keys.record(id)],
          ['running', 'queued', JSON.stringify({ state: 'queued', position: 0 })],
        );
        throw error;
      }
      const internal = new InternalError(ErrorCode.Inference, `job ${id} failed: ${message}`, {
        cause: error,
        errorId: newErrorId(random),
        context: { jobId: id, attempts: job.attemptsMade + 1 },
      });
      const shown = reportError(logger, internal, { jobId: id, workerId, attempt: job.attemptsMade + 1 });
      await settle(id, surface, 'failed', {
        state: 'failed',
        reason: `Generation failed after ${job.attemptsMade + 1} ${job.attemptsMade === 0 ? 'attempt' : 'attempts'}.`,
        ...(shown.errorId === undefined ? {} : { errorId: shown.errorId }),
        userFacing: false,
      });
      throw error;
    } finally {
      running.delete(id);
    }
  }

  const stall = stallSettings(options.takeoverMs ?? WORKER_DEFAULTS.takeoverMs);
  const worker = new Worker<unknown, string>(GENERATE_QUEUE, processJob, {
    connection: client,
    prefix,
    name: workerId,
    concurrency,
    stalledInterval: options.stalledIntervalMs ?? stall.stalledIntervalMs,
    lockDuration: options.lockDurationMs ?? stall.lockDurationMs,
    maxStalledCount: options.maxStalledCount ?? WORKER_DEFAULTS.maxStalledCount,
    autorun: false,
  });
  worker.on('error', (error) => {
    reportError(logger, new InternalError(ErrorCode.Redis, 'generation worker error', { cause: error }), {
      workerId,
    });
  });
  // Jobs failed without our processor running (stalled too often): end the record and deliver.
  worker.on('failed', (job, error) => {
    if (job?.id === undefined) return;
    const exhausted = job.attemptsMade >= (job.opts.attempts ?? 1) || error.name === 'UnrecoverableError';
    if (!exhausted) return;
    const id = job.id;
    const internal = new InternalError(ErrorCode.Internal, `job ${id} failed: ${error.message}`, {
      errorId: newErrorId(random),
    });
    void (async () => {
      const surface = await recordSurface(id);
      const state = await client.hget(keys.record(id), 'state');
      if (state === null || state === 'done' || state === 'failed' || state === 'cancelled') {
        // Already ended by the processor; the delivery add is idempotent, so just make sure of it.
        if (state !== null && surface !== undefined) await deliveries.enqueue(id, surface);
        return;
      }
      const shown = reportError(logger, internal, { jobId: id, workerId });
      await settle(id, surface, 'failed', {
        state: 'failed',
        reason: 'The worker running this job stopped unexpectedly too many times.',
        ...(shown.errorId === undefined ? {} : { errorId: shown.errorId }),
        userFacing: false,
      });
    })().catch((e: unknown) => reportError(logger, e, { jobId: id, workerId, where: 'failed handler' }));
  });
  void worker.run().catch((error: unknown) => reportError(logger, error, { workerId, where: 'worker loop' }));
  await worker.waitUntilReady();
  logger.info({ workerId, concurrency, engine: engine.info.name }, 'generation worker started');

  let closing: Promise<void> | undefined;
  const release = (): void => {
    for (const id of running.keys()) abort(id, 'shutdown');
  };
  return {
    id: workerId,
    engine,
    active: () => [...running.keys()],
    close: (closeOptions = {}) => {
      if (closing !== undefined) {
        // A second request (second SIGTERM) may ask to release the running jobs now.
        if (closeOptions.releaseNow === true) release();
        return closing;
      }
      closing = (async () => {
        const timer = setTimeout(release, closeOptions.releaseNow === true ? 0 : shutdownTimeoutMs);
        try {
          await worker.close();
        } finally {
          clearTimeout(timer);
          clearInterval(poll);
        }
        await deliveries.close();
        await Promise.all([closeRedisClient(subscriber), closeRedisClient(client)]);
        if (ownsEngine) await engine.close();
        logger.info({ workerId }, 'generation worker stopped');
      })();
      return closing;
    },
  };
}
