import type { Surface } from '../core/jobspec.ts';
import type { StepProgress } from '../models/engine.ts';
import type { WorkerContext } from './worker-context.ts';

const PROGRESS_TTL_MS = 3_600_000;

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

/**
 * Publishes a job's progress to its surface's channel (lossy), and keeps the latest step for
 * `Jobs.status`; a progress event with a preview does not overwrite the step.
 */
export function createProgressPublisher(
  ctx: WorkerContext,
): (id: string, surface: Surface, progress: StepProgress, preview?: Buffer) => void {
  const { client, keys, logger } = ctx;

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
  return publishProgress;
}
