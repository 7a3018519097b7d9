import { EventEmitter } from 'node:events';
import { Queue, QueueEvents } from 'bullmq';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../core/errors.ts';
import { jobIdFor, type Surface } from '../../core/jobspec.ts';
import { readPngText } from '../../models/png.ts';
import { cellOrigin, gridLayout } from '../../queue/grid.ts';
import { createJobs, type JobsOptions } from '../../queue/jobs.ts';
import { deliveryQueueName } from '../../queue/keys.ts';
import {
  createNoopEngine,
  failEveryCall,
  failFirstCalls,
  failImpossible,
  type NoopEngineOptions,
  noopBaseColour,
} from '../../queue/noop-engine.ts';
import { PermanentDeliveryError, type ProgressEvent, RetryLaterError } from '../../queue/types.ts';
import { type QueueWorker, startWorker, type WorkerOptions } from '../../queue/worker.ts';
import { runWorkerProcess } from '../../queue/worker-process.ts';
import { EventLog } from '../helpers/events.ts';
import { uniquePrefix, useTestRedis } from '../helpers/use-redis.ts';
import { captureLogger, makeSpec, recordDeliveries, recordMetrics, waitFor } from './helpers.ts';

const redis = useTestRedis();
const cleanups = redis.cleanups;

/**
 * The state of a grid's delivery job in its surface's BullMQ queue. 'completed' or 'failed' is
 * final: nothing delivers it again, so "delivered once" can be checked then instead of after a wait.
 */
async function deliveryState(prefix: string, surface: Surface, id: string): Promise<string> {
  const queue = new Queue(deliveryQueueName(surface), { connection: { url: redis.url }, prefix });
  try {
    return await queue.getJobState(id);
  } finally {
    await queue.close();
  }
}

function setup(
  options: { jobs?: Partial<Omit<JobsOptions, 'connection' | 'prefix' | 'logger'>>; prefix?: string } = {},
) {
  const prefix = options.prefix ?? uniquePrefix('w');
  const logger = captureLogger();
  const jobs = createJobs({
    connection: redis.url,
    prefix,
    logger,
    backoff: { type: 'fixed', delayMs: 50 },
    delivery: { backoffMs: 50, stalledIntervalMs: 500, lockDurationMs: 2000 },
    ...options.jobs,
  });
  cleanups.push(() => jobs.close());
  const workers: QueueWorker[] = [];
  async function worker(
    engineOptions: NoopEngineOptions = {},
    workerOptions: Partial<Omit<WorkerOptions, 'connection' | 'prefix' | 'engine' | 'logger'>> = {},
  ) {
    const engine = createNoopEngine(engineOptions);
    const w = await startWorker({
      connection: redis.url,
      prefix,
      engine,
      logger,
      stalledIntervalMs: 500,
      lockDurationMs: 2000,
      previewEveryMs: 0,
      cancelPollMs: 200,
      delivery: { backoffMs: 50 },
      ...workerOptions,
    });
    workers.push(w);
    cleanups.push(() => w.close({ releaseNow: true }));
    return { worker: w, engine };
  }
  return { prefix, jobs, logger, worker, workers };
}

describe('worker', () => {
  it('runs a job end to end: 2×2 grid, full-size PNGs with parameters, record, progress, one delivery', async () => {
    const { jobs, worker, prefix } = setup();
    const progress: ProgressEvent[] = [];
    jobs.onProgress('discord', (event) => progress.push(event));
    const deliveries = recordDeliveries(jobs);
    const metrics = recordMetrics();
    // The per-step times the worker reports, kept with their values.
    const stepMs: number[] = [];
    const stepTime = metrics.stepTime;
    metrics.stepTime = (ms) => {
      stepMs.push(ms);
      stepTime(ms);
    };
    const { engine } = await worker({ stepDelayMs: 15 }, { previewEveryMs: 1, workerId: 'gpu-0', metrics });
    const spec = makeSpec({ steps: 6, seeds: [11, 22, 33, 44] });
    const submitted = await jobs.submit(spec);
    expect(submitted.jobId).toBe(jobIdFor('discord', spec.origin.interactionId));
    expect(submitted.seeds).toEqual([11, 22, 33, 44]);

    const [delivery] = await waitFor('delivery', () =>
      deliveries.delivered.length > 0 ? deliveries.delivered : null,
    );
    expect(delivery?.event.type).toBe('done');
    if (delivery?.event.type !== 'done') throw new Error('unreachable');
    expect(delivery.attempt).toBe(1);
    expect(engine.calls).toBe(1);

    // Grid: 2×2 of 64 px cells; cell k starts with the base colour of seed k.
    const grid = sharp(delivery.event.grid);
    const meta = await grid.metadata();
    expect([meta.width, meta.height]).toEqual([128, 128]);
    const raw = await grid.removeAlpha().raw().toBuffer();
    const layout = gridLayout(4, 64, 64);
    [11, 22, 33, 44].forEach((seed, k) => {
      const { left, top } = cellOrigin(layout, k);
      const at = (top * 128 + left) * 3;
      expect([raw[at], raw[at + 1], raw[at + 2]]).toEqual([...noopBaseColour(seed)]);
    });
    expect(readPngText(delivery.event.grid).parameters).toContain('Seed: 11');

    // Full-size image 2 carries its own A1111 parameters.
    const image2 = await delivery.event.image(2);
    expect((await sharp(image2).metadata()).width).toBe(64);
    const text = readPngText(image2).parameters ?? '';
    expect(text).toContain('a red fox\nNegative prompt: blurry\n');
    expect(text).toContain('Seed: 33');
    expect(text).toContain('Sampler: Euler a');
    expect(await jobs.imagePng(submitted.jobId, 2)).toEqual(image2);
    expect(await jobs.gridPng(submitted.jobId)).toEqual(delivery.event.grid);

    const record = await jobs.record(submitted.jobId);
    expect(record?.state.status).toEqual({ state: 'done' });
    expect(await jobs.status(submitted.jobId)).toEqual({ state: 'done' });
    expect(record?.state.worker).toBe('gpu-0');
    expect(record?.state.attempts).toBe(1);
    expect(record?.spec.origin).toMatchObject({ surface: 'discord', user: 'user-1' });
    expect(record?.state.messageRef).toEqual({ token: 'tok' });
    expect(record?.result?.model).toEqual({ name: 'default', demo: true, label: 'noop' });
    expect(record?.result?.truncatedTokens).toEqual([0, 0, 0, 0]);
    expect(record?.result?.resultKeys?.images).toHaveLength(4);
    const t = record?.state.timings;
    expect(t?.startedAt).toBeGreaterThanOrEqual(t?.queuedAt ?? Number.NaN);
    expect(t?.finishedAt).toBeGreaterThanOrEqual(t?.startedAt ?? Number.NaN);
    expect(Object.keys(t?.phases ?? {}).sort()).toEqual(
      ['compose', 'decode', 'denoise', 'queueWait', 'store', 'textEncode'].sort(),
    );
    // Denoising is the engine's measured steps: six, each one taking time (the engine sleeps in each).
    expect(stepMs).toHaveLength(6);
    expect(stepMs.every((ms) => ms > 0)).toBe(true);
    // (The worker keeps phases to 1/100 ms.)
    expect(t?.phases?.denoise).toBe(Math.round(stepMs.reduce((a, b) => a + b, 0) * 100) / 100);

    // Progress: every step, in order, and at least one latent preview PNG.
    await waitFor('last progress', () => progress.some((p) => p.step === 6));
    const steps = progress.filter((p) => p.preview === undefined).map((p) => p.step);
    expect(steps).toEqual([1, 2, 3, 4, 5, 6]);
    const preview = progress.find((p) => p.preview !== undefined)?.preview;
    expect(preview).toBeDefined();
    expect((await sharp(preview).metadata()).width).toBe(8);

    // Nothing posted twice: once the delivery job has completed nothing can deliver it again.
    await waitFor('the delivery job to complete', async () =>
      (await deliveryState(prefix, 'discord', submitted.jobId)) === 'completed' ? true : null,
    );
    expect(deliveries.delivered).toHaveLength(1);
    expect(deliveries.posts.get(submitted.jobId)).toBe(1);

    expect(metrics.calls.filter((c) => c === 'step')).toHaveLength(6);
    expect(metrics.calls.filter((c) => c.startsWith('phase:')).sort()).toEqual(
      ['compose', 'decode', 'denoise', 'queueWait', 'store', 'textEncode'].map((p) => `phase:${p}`).sort(),
    );
    expect(metrics.calls.filter((c) => c.startsWith('finished:'))).toEqual(['finished:done']);
  });

  it('cancels a queued job: removed from the queue, record cancelled, user told, slot freed', async () => {
    const { jobs, worker } = setup({ jobs: { limits: { perUser: 1 } } });
    const deliveries = recordDeliveries(jobs);
    const { jobId } = await jobs.submit(makeSpec());
    await expect(jobs.submit(makeSpec())).rejects.toMatchObject({ code: ErrorCode.RateLimited });
    expect(await jobs.cancel(jobId, { surface: 'discord', user: 'user-1' })).toEqual({
      state: 'cancelled',
      by: 'user-1',
    });
    expect(await jobs.status(jobId)).toEqual({ state: 'cancelled', by: 'user-1' });
    // The slot is free again.
    const next = await jobs.submit(makeSpec());
    const [d] = await waitFor('cancel delivery', () =>
      deliveries.delivered.length ? deliveries.delivered : null,
    );
    expect(d?.event).toMatchObject({ type: 'cancelled', by: 'user-1' });
    // A worker started now never runs the cancelled job, only the next one.
    const { engine } = await worker();
    await waitFor('next job done', async () => (await jobs.status(next.jobId))?.state === 'done');
    expect(engine.calls).toBe(1);
    expect(deliveries.byId(jobId)).toHaveLength(1);
  });

  it('cancels a running job at the next step, across processes via Redis, and takes the next job', async () => {
    const { jobs, worker, prefix } = setup();
    const deliveries = recordDeliveries(jobs);
    // The worker's poll of the record (its safety net) would come only after the job's own end
    // (100 steps of 40 ms): an abort before then came through Redis pub/sub, at the next step.
    const { engine } = await worker({ stepDelayMs: 40 }, { cancelPollMs: 60_000 });
    const { jobId } = await jobs.submit(makeSpec({ steps: 100 }));
    const running = await waitFor('running at step 2', async () => {
      const s = await jobs.status(jobId);
      return s?.state === 'running' && s.step >= 2 ? s : null;
    });
    expect(running).toMatchObject({ state: 'running', total: 100 });
    // Another Jobs instance (as another bot process would) cancels it, as an admin.
    const other = createJobs({ connection: redis.url, prefix, logger: captureLogger() });
    cleanups.push(() => other.close());
    await expect(other.cancel(jobId, { surface: 'slack', user: 'admin-9' })).resolves.toEqual({
      state: 'cancelled',
      by: 'admin-9',
    });
    await waitFor('engine aborted', () => engine.aborted === 1);
    expect(engine.calls).toBe(1);
    const [d] = await waitFor('cancel delivery', () =>
      deliveries.delivered.length ? deliveries.delivered : null,
    );
    expect(d?.event).toMatchObject({ type: 'cancelled', by: 'admin-9' });
    expect((await jobs.record(jobId))?.state.status).toEqual({ state: 'cancelled', by: 'admin-9' });
    const next = await jobs.submit(makeSpec({ steps: 2 }));
    await waitFor('next job done', async () => (await jobs.status(next.jobId))?.state === 'done');
  });

  // Who may cancel is the conversation service's decision (test/bots/service.test.ts, test/web/identity.test.ts);
  // the queue refuses only what it cannot do.
  it('refuses cancels it cannot do (finished, unknown), with user errors', async () => {
    const { jobs, worker } = setup();
    const { jobId } = await jobs.submit(makeSpec());
    await worker();
    await waitFor('done', async () => (await jobs.status(jobId))?.state === 'done');
    await expect(jobs.cancel(jobId, { surface: 'discord', user: 'user-1' })).rejects.toMatchObject({
      code: ErrorCode.AlreadyFinished,
      message: 'This job has already finished.',
    });
    await expect(jobs.cancel('discord-nope', { surface: 'discord', user: 'u' })).rejects.toMatchObject({
      code: ErrorCode.NotFound,
    });
  });

  it('retries a transient engine failure, then succeeds', async () => {
    const { jobs, worker, logger } = setup();
    const deliveries = recordDeliveries(jobs);
    const { engine } = await worker({ failWith: failFirstCalls(2) });
    const { jobId } = await jobs.submit(makeSpec());
    await waitFor('done', async () => (await jobs.status(jobId))?.state === 'done');
    expect(engine.calls).toBe(3);
    expect((await jobs.record(jobId))?.state.attempts).toBe(3);
    expect(logger.entries.filter((e) => e.msg === 'job failed; will retry')).toHaveLength(2);
    await waitFor('delivery', () => deliveries.delivered.length === 1);
    expect(deliveries.delivered[0]?.event.type).toBe('done');
  });

  it('retries up to N, then fails with an error id the user sees and the log has', async () => {
    const { jobs, worker, logger } = setup({ jobs: { attempts: 2 } });
    const deliveries = recordDeliveries(jobs);
    const { engine } = await worker({ failWith: failEveryCall(), failAtStep: 2 });
    const { jobId } = await jobs.submit(makeSpec());
    const [d] = await waitFor('failure delivery', () =>
      deliveries.delivered.length ? deliveries.delivered : null,
    );
    expect(engine.calls).toBe(2);
    if (d?.event.type !== 'failed') throw new Error(`expected failed, got ${d?.event.type}`);
    expect(d.event.userFacing).toBe(false);
    expect(d.event.reason).toBe('Generation failed after 2 attempts.');
    expect(d.event.errorId).toMatch(/^err_[a-z0-9]{10}$/u);
    const status = await jobs.status(jobId);
    expect(status).toEqual({
      state: 'failed',
      reason: d.event.reason,
      errorId: d.event.errorId,
      userFacing: false,
    });
    const errorId = d.event.errorId;
    const logged = logger.entries.find((e) => e.level === 'error' && e.obj.errorId === errorId);
    expect(logged?.msg).toContain('simulated out of memory');
    // The slot is freed: the user can submit twice again.
    await jobs.submit(makeSpec());
    await jobs.submit(makeSpec());
  });

  it('fails an impossible spec fast, without retry, telling the user why', async () => {
    const { jobs, worker } = setup({ jobs: { attempts: 3 } });
    const deliveries = recordDeliveries(jobs);
    const { engine } = await worker({ failWith: failImpossible('This model cannot make 4096×4096 images.') });
    const { jobId } = await jobs.submit(makeSpec());
    const [d] = await waitFor('failure delivery', () =>
      deliveries.delivered.length ? deliveries.delivered : null,
    );
    expect(engine.calls).toBe(1);
    expect(d?.event).toMatchObject({
      type: 'failed',
      userFacing: true,
      reason: 'This model cannot make 4096×4096 images.',
    });
    expect((await jobs.record(jobId))?.state.attempts).toBe(1);
  });

  it('treats an invalid payload reaching the worker as unrecoverable, and tells the user why', async () => {
    const { prefix, jobs, worker } = setup();
    const deliveries = recordDeliveries(jobs);
    const { jobId } = await jobs.submit(makeSpec());
    // Tamper with the queued payload, as a producer of another version might.
    const queue = new Queue('generate', { connection: { url: redis.url }, prefix });
    cleanups.push(() => queue.close());
    const job = await queue.getJob(jobId);
    await job?.updateData({ ...job.data, steps: 0 });
    const { engine } = await worker();
    const [d] = await waitFor('failure delivery', () =>
      deliveries.delivered.length ? deliveries.delivered : null,
    );
    expect(engine.calls).toBe(0);
    expect(d?.event).toMatchObject({ type: 'failed', userFacing: true });
    if (d?.event.type === 'failed') expect(d.event.reason).toMatch(/^That request can't be run: steps: /u);
    expect(await (await queue.getJob(jobId))?.getState()).toBe('failed');
    expect((await queue.getJob(jobId))?.attemptsMade).toBe(1);
  });

  it('retries a failed delivery with backoff and honours retry-after, posting once', async () => {
    const { jobs, worker, prefix } = setup();
    let calls = 0;
    let thrownAt = Number.NaN;
    const attempts: number[] = [];
    // BullMQ announces each delayed retry with the time it becomes due.
    const events = new QueueEvents(deliveryQueueName('discord'), { connection: { url: redis.url }, prefix });
    cleanups.push(() => events.close());
    const delayed = new EventLog<number>();
    events.on('delayed', ({ delay }) => delayed.push(Number(delay)));
    await events.waitUntilReady();
    const deliveries = recordDeliveries(jobs, 'discord', async (_event, ctx) => {
      calls++;
      attempts.push(ctx.attempt);
      if (calls === 1) throw new Error('discord 502');
      if (calls === 2) {
        thrownAt = Date.now();
        throw new RetryLaterError('discord 429', 400);
      }
    });
    // Post first, then fail: the post must not repeat on the retries.
    const posting = recordDeliveries(jobs, 'slack', async (event, ctx) => {
      await ctx.once('edit', async () => `edited-${event.record.id}`);
      if (ctx.attempt === 1) throw new Error('slack 500 after posting');
    });
    await worker();
    const a = await jobs.submit(makeSpec());
    const b = await jobs.submit(makeSpec({ surface: 'slack' }));
    await waitFor('discord delivered', () => deliveries.delivered.length === 1);
    expect(attempts).toEqual([1, 2, 3]);
    // The third attempt was scheduled 400 ms after the 429, not after the 50 ms backoff.
    const due = await delayed.until('the retry-after delay', (at) => at > thrownAt);
    expect(due).toBeGreaterThanOrEqual(thrownAt + 400);
    expect(deliveries.posts.get(a.jobId)).toBe(1);
    await waitFor('slack delivered', () => posting.delivered.length === 1);
    expect(posting.delivered[0]?.attempt).toBe(2);
    expect(posting.posts.get(b.jobId)).toBe(1);
  });

  it('stops retrying a delivery that can never succeed (PermanentDeliveryError), and logs it', async () => {
    const metrics = recordMetrics();
    const { jobs, worker, logger, prefix } = setup({ jobs: { metrics } });
    let calls = 0;
    jobs.onDelivery('slack', async () => {
      calls++;
      throw new PermanentDeliveryError('Slack chat.postMessage failed: channel_not_found');
    });
    await worker();
    const { jobId } = await jobs.submit(makeSpec({ surface: 'slack' }));
    await waitFor('gave up', () => metrics.calls.includes('delivery:gave_up'));
    // Failed for good in BullMQ: no attempt can follow (a retry would be delayed or waiting).
    await waitFor('the delivery job to fail', async () =>
      (await deliveryState(prefix, 'slack', jobId)) === 'failed' ? true : null,
    );
    expect(calls).toBe(1);
    expect(metrics.calls.filter((c) => c === 'delivery:retry')).toEqual([]);
    expect(
      logger.entries.some((e) => e.level === 'error' && e.obj.jobId === jobId && e.obj.final === true),
    ).toBe(true);
  });

  it('on close, finishes the running job before stopping', async () => {
    const { jobs, worker } = setup();
    const { worker: w } = await worker({ stepDelayMs: 30 });
    const { jobId } = await jobs.submit(makeSpec({ steps: 15 }));
    await waitFor('running', async () => (await jobs.status(jobId))?.state === 'running');
    await w.close();
    expect(await jobs.status(jobId)).toEqual({ state: 'done' });
  });

  it('past the shutdown deadline, releases the running job to another worker', async () => {
    const { jobs, worker, prefix } = setup();
    const deliveries = recordDeliveries(jobs);
    const { worker: first, engine: firstEngine } = await worker(
      { stepDelayMs: 30 },
      { shutdownTimeoutMs: 150, workerId: 'first' },
    );
    const { jobId } = await jobs.submit(makeSpec({ steps: 60 }));
    await waitFor('running', async () => (await jobs.status(jobId))?.state === 'running');
    await first.close();
    // close() returned with the job unfinished (60 steps of 30 ms): it did not wait for it.
    expect(firstEngine.aborted).toBe(1);
    expect((await jobs.record(jobId))?.state.timings.finishedAt).toBeUndefined();
    expect(await jobs.status(jobId)).toMatchObject({ state: 'queued', position: 0 });
    await worker({ stepDelayMs: 1 }, { workerId: 'second' });
    await waitFor('done', async () => (await jobs.status(jobId))?.state === 'done', 10_000);
    const record = await jobs.record(jobId);
    expect(record?.state.worker).toBe('second');
    expect(record?.state.attempts).toBe(2);
    await waitFor('delivered', () => deliveries.delivered.length === 1);
    await waitFor('the delivery job to complete', async () =>
      (await deliveryState(prefix, 'discord', jobId)) === 'completed' ? true : null,
    );
    expect(deliveries.delivered).toHaveLength(1);
    expect(deliveries.posts.get(jobId)).toBe(1);
  });

  it('runWorkerProcess: the first signal drains, a second one releases the running job at once', async () => {
    const { jobs, prefix } = setup();
    const signals = new EventEmitter();
    const engine = createNoopEngine({ stepDelayMs: 30 });
    const proc = await runWorkerProcess({
      connection: redis.url,
      prefix,
      engine: async () => engine,
      logger: captureLogger(),
      shutdownTimeoutMs: 60_000,
      previewEveryMs: 0,
      signalSource: signals as unknown as Pick<NodeJS.Process, 'on' | 'off'>,
    });
    cleanups.push(() => proc.stop());
    const { jobId } = await jobs.submit(makeSpec({ steps: 200 }));
    const before = await waitFor('running', async () => {
      const status = await jobs.status(jobId);
      return status?.state === 'running' ? status : null;
    });
    signals.emit('SIGTERM', 'SIGTERM');
    // Draining: the job goes on making steps after the first signal.
    await waitFor('a step after SIGTERM', async () => {
      const status = await jobs.status(jobId);
      return status?.state === 'running' && status.step > before.step + 1;
    });
    expect(engine.aborted).toBe(0);
    signals.emit('SIGINT', 'SIGINT');
    await proc.stopped;
    expect(engine.aborted).toBe(1);
    expect(engine.closed).toBe(true);
    expect(await jobs.status(jobId)).toMatchObject({ state: 'queued', position: 0 });
    expect(signals.listenerCount('SIGTERM')).toBe(0);
  });
});
