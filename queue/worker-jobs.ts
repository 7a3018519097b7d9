import { type Job, UnrecoverableError, WaitingError } from 'bullmq';
import {
  CodedError,
  ErrorCode,
  InternalError,
  isUserError,
  newErrorId,
  reportError,
} from '../core/errors.ts';
import { parseJobSpec } from '../core/jobspec.ts';
import { modelRevisionError } from '../core/models.ts';
import { encodePng } from '../models/png.ts';
import type { Lease } from './engine-pool.ts';
import { JOBS_DEFAULTS } from './jobs.ts';
import { decodeRecord, type Phases, RENDER_JOB } from './records.ts';
import { runScript, START, stringReply, TRANSITION } from './scripts.ts';
import type { Running, WorkerContext } from './worker-context.ts';
import { createInitImages } from './worker-init.ts';
import { createProgressPublisher, userProgress } from './worker-progress.ts';
import type { MadeWith, WorkerStore } from './worker-store.ts';

/** Thrown out of the engine when its signal aborted (CodedError E_CANCELLED, or a DOM AbortError). */
function isAbortError(error: unknown): boolean {
  return (
    (error instanceof CodedError && error.code === ErrorCode.Cancelled) ||
    (error instanceof Error && error.name === 'AbortError')
  );
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/**
 * Runs one job taken from one model's generate queue: a generation (start the record, run the engine
 * with progress, store the PNGs, end the record; retry, release or fail it) or a re-render of a
 * finished grid's PNGs. `served` is the model that queue is for.
 */
export function createJobProcessor(
  ctx: WorkerContext,
  store: WorkerStore,
  served: { readonly name: string; readonly revision: string },
): (job: Job<unknown, string>, token?: string) => Promise<string> {
  const {
    client,
    keys,
    pool,
    slots,
    running,
    workerId,
    logger,
    metrics,
    random,
    previewEveryMs,
    imageTtlMs,
  } = ctx;
  const { settle, recordSurface, updateStats, storeResults, publishRendered } = store;
  const publishProgress = createProgressPublisher(ctx);
  const initImages = createInitImages(client, keys);

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
    const lease = await pool.acquire(served.name);
    const engine = lease.engine;
    // Another model, or other files under the same name, would give other pictures for the same
    // seeds: refuse rather than pretend. Records from before revisions name the loader's label.
    const revisions = madeBy?.revision !== undefined && served.revision !== '';
    const otherRevision = revisions && madeBy?.revision !== served.revision;
    // Without revisions to compare, the loader's label decides (records from before labels: their name).
    const otherModel =
      madeBy !== undefined && !revisions && (madeBy.label ?? madeBy.name) !== engine.info.name;
    if (otherRevision || otherModel) {
      lease.release();
      const reason = otherRevision
        ? modelRevisionError(served.name, madeBy?.revision ?? '', served.revision).message
        : `This grid's images were made with the model ${madeBy?.label ?? madeBy?.name ?? ''}, which is no longer loaded, so they can't be made again.`;
      logger.warn(
        { jobId: id, workerId, model: madeBy, loaded: engine.info.name, revision: served.revision },
        'cannot re-render: other model',
      );
      await publishRendered({ id, ok: false, reason, userFacing: true });
      return 'other-model';
    }
    const key = `render:${id}`;
    const entry: Running = { controller: new AbortController(), reason: undefined };
    running.set(key, entry);
    try {
      const signal = entry.controller.signal;
      const result = await engine.generate(await initImages.request(record.spec, engine, signal), { signal });
      const now = Date.now();
      const expireAt = now + Math.min(imageTtlMs, pttl > 0 ? pttl : JOBS_DEFAULTS.recordTtlMs);
      await storeResults(id, result, record.spec, expireAt, madeWith(engine.info));
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
      lease.release();
    }
  }

  function madeWith(info: MadeWith['info']): MadeWith {
    return { name: served.name, revision: served.revision, info };
  }

  async function processJob(job: Job<unknown, string>, token?: string): Promise<string> {
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
    if (
      spec.modelRevision !== undefined &&
      served.revision !== '' &&
      spec.modelRevision !== served.revision
    ) {
      // A refine or reroll of a grid made with other files under this name: its seeds would not match.
      const reason = modelRevisionError(served.name, spec.modelRevision, served.revision).message;
      logger.warn(
        { jobId: id, workerId, want: spec.modelRevision, have: served.revision },
        'other model revision',
      );
      await settle(id, surface, 'failed', { state: 'failed', reason, userFacing: true });
      throw new UnrecoverableError(reason);
    }
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
    let lease: Lease | undefined;
    const attemptStart = performance.now();
    let lastPreviewAt = performance.now();
    let previewBusy = false;
    try {
      lease = await pool.acquire(served.name);
      const engine = lease.engine;
      // Image-to-image: the starting picture from the store (a lost grid image is made again first).
      const request = await initImages.request(spec, engine, entry.controller.signal);
      const result = await engine.generate(request, {
        signal: entry.controller.signal,
        // A decoded (TAESD) preview costs a decode: make one only as often as previews are published.
        decodedPreviewEveryMs: previewEveryMs,
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
      const made = madeWith(engine.info);
      lease.release();
      const { composeMs, storeMs, recordResult } = await storeResults(id, result, spec, expireAt, made);
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
      await initImages.renew(spec, recordTtl > 0 ? recordTtl : JOBS_DEFAULTS.recordTtlMs).catch(() => {});
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
      lease?.release();
    }
  }

  // One batch at a time per slot across all of this worker's models (WORKER_CONCURRENCY in all).
  return async (job, token) => {
    const free = await slots.take();
    try {
      if (ctx.isClosing()) {
        // Fetched from another model's queue while this worker's slots were busy, and the worker is
        // stopping now: hand it back unrun rather than hold the shutdown for a whole batch.
        await job.moveToWait(token);
        throw new WaitingError();
      }
      return await (job.name === RENDER_JOB ? processRender(job, token) : processJob(job, token));
    } finally {
      free();
    }
  };
}
