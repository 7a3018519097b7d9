import type { DeliveryContext, DeliveryEvent, ProgressEvent } from '../../queue/index.ts';
import type { ChatSurface } from '../surface.ts';
import { interactionKey, type ServiceContext } from './context.ts';
import { nsfwPolicyAt, showGrid } from './nsfw.ts';
import { cancelledView, failureView, gridView, progressView } from './views.ts';

/**
 * What arrives after the interaction: a job's result (durable, at most once per step) and its
 * progress (best effort). Both run on the job's chain, after its submission's (see submit.ts).
 */

/** Shows a finished job's result. Throws when the surface fails, so the durable delivery retries. */
export async function deliver(
  ctx: ServiceContext,
  surface: ChatSurface,
  event: DeliveryEvent,
  steps: DeliveryContext,
): Promise<void> {
  const record = event.record;
  // From now on no progress edit may overwrite the result (the caller drops pending ones too).
  ctx.known.markFinished(record.id);
  await ctx.gate.acksSettled();
  // A fast job may finish before its submission has shown the queued message: that goes first.
  await ctx.chains.idle(interactionKey(record.spec.origin));
  await ctx.chains.run(record.id, async () => {
    const target = ctx.known.targetOf(record);
    const name = surface.surface;
    switch (event.type) {
      case 'done':
        await steps.once(`${name}:grid`, async () => {
          // The policy of the channel the grid is shown in, as its settings are now.
          const policy = await nsfwPolicyAt(ctx, record.spec.origin);
          const shown = await showGrid(record, event.grid, policy);
          return surface.showGrid(target, await gridView(surface, record, event.grid, shown), steps);
        });
        break;
      case 'failed':
        await steps.once(`${name}:failed`, () => surface.showFailure(target, failureView(surface, event)));
        break;
      case 'cancelled':
        await steps.once(`${name}:cancelled`, () =>
          surface.showCancelled(target, cancelledView(surface, event)),
        );
        break;
    }
  });
  ctx.known.forget(record.id);
}

/** Edits the job's message with one (throttled) progress event. Best effort: failures are only logged. */
export function showProgress(ctx: ServiceContext, surface: ChatSurface, event: ProgressEvent): Promise<void> {
  return ctx.chains.run(event.jobId, async () => {
    await ctx.gate.acksSettled();
    if (ctx.known.isFinished(event.jobId)) return;
    try {
      let info = ctx.known.get(event.jobId);
      if (info === undefined) {
        // Submitted before a restart, by another process, or still being submitted here.
        const record = await ctx.jobs.record(event.jobId);
        if (record === null) return;
        await ctx.chains.idle(interactionKey(record.spec.origin));
        if (ctx.known.isFinished(event.jobId)) return;
        info = ctx.known.infoOf(record);
        ctx.known.set(event.jobId, info);
      }
      await surface.showProgress(
        info.target,
        progressView(surface, event, { owner: info.target.owner, prompt: info.prompt }),
      );
    } catch (error) {
      ctx.log.debug({ err: error, jobId: event.jobId }, 'progress edit failed (progress is best effort)');
    }
  });
}
