import type { JobSpec, Surface } from '../core/jobspec.ts';
import { SURFACES } from '../core/jobspec.ts';
import type { GenerateResult, ModelInfo } from '../models/engine.ts';
import { encodePng, formatParameters } from '../models/png.ts';
import { composeGrid } from './grid.ts';
import { checkResult, type Phases, type RecordResult, type RenderedMessage } from './records.ts';
import { FINISH, runScript, STORE_IMAGES, stringReply } from './scripts.ts';
import type { JobState, JobStatus } from './types.ts';
import type { WorkerContext } from './worker-context.ts';
import { initLabel } from './worker-init.ts';

export interface WorkerStore {
  settle(
    id: string,
    surface: Surface | undefined,
    state: 'done' | 'failed' | 'cancelled',
    status: JobStatus,
    phases?: Phases,
    result?: RecordResult,
  ): Promise<JobState | 'missing'>;
  recordSurface(id: string): Promise<Surface | undefined>;
  updateStats(jobMs: number): Promise<void>;
  storeResults(
    id: string,
    result: GenerateResult,
    spec: JobSpec,
    expireAt: number,
    made: MadeWith,
  ): Promise<{ composeMs: number; storeMs: number; recordResult: RecordResult }>;
  publishRendered(message: RenderedMessage): Promise<unknown>;
}

/** The model a batch ran on: its served name, the revision of its files, and what the loader reported. */
export interface MadeWith {
  readonly name: string;
  readonly revision: string;
  readonly info: ModelInfo;
}

/**
 * What a worker writes to Redis: a job's PNGs (grid and full-size, under the byte budget), the
 * end of its record with the result (FINISH, then its delivery), the average job time, and the
 * end of a re-render.
 */
export function createWorkerStore(ctx: WorkerContext): WorkerStore {
  const { client, keys, deliveries, logger, metrics, imageStoreMaxBytes } = ctx;

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

  async function updateStats(jobMs: number): Promise<void> {
    const prev = Number((await client.hget(keys.stats, 'avgJobMs')) ?? Number.NaN);
    const avg = Number.isFinite(prev) && prev > 0 ? prev * 0.8 + jobMs * 0.2 : jobMs;
    await client.hset(keys.stats, 'avgJobMs', String(Math.round(avg)));
  }

  async function storeResults(
    id: string,
    result: GenerateResult,
    spec: JobSpec,
    expireAt: number,
    made: MadeWith,
  ) {
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
        model: made.name,
        ...(made.revision === '' ? {} : { modelHash: made.revision }),
        generator: result.generator,
        ...(spec.init === undefined || spec.strength === undefined
          ? {}
          : { strength: spec.strength, initImage: initLabel(spec.init) }),
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
      model: {
        name: made.name,
        demo: made.info.demo,
        ...(made.revision === '' ? {} : { revision: made.revision }),
        label: made.info.name,
      },
      ...(result.images.some((image) => image.nsfw !== undefined)
        ? { nsfw: result.images.map((image) => image.nsfw === true) }
        : {}),
    });
    return { composeMs, storeMs, recordResult };
  }

  function publishRendered(message: RenderedMessage): Promise<unknown> {
    return client.publish(keys.renderedChannel, JSON.stringify(message));
  }
  return { settle, recordSurface, updateStats, storeResults, publishRendered };
}
