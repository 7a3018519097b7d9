import { ErrorCode, InternalError, UserError } from '../core/errors.ts';
import type { JobSpec } from '../core/jobspec.ts';
import type { RedisClient } from './connection.ts';
import { fairTeam } from './fairness.ts';
import type { JobsContext } from './jobs-context.ts';
import { loadRecord } from './queue-state.ts';
import { RENDER_JOB, type RenderedMessage, type RenderJobData } from './records.ts';

/**
 * Re-renders go LIFO in the plain wait list, ahead of every team's turn (someone is waiting on a
 * button). So that one team can't jump the queue by pressing U on many old grids, at most this many
 * of one team's (the grid's, which is the presser's: buttons act only in their grid's channel) wait
 * at once; a further one is refused with a retry hint until one has run.
 */
export const MAX_WAITING_RENDERS_PER_TEAM = 2;

/** Of the wait list's first entries, enough to see every re-render (they are LIFO at its head). */
const RENDER_SCAN = 200;

export interface GridImages {
  gridPngNow(id: string): Promise<Buffer | null>;
  imagePngNow(id: string, index: number): Promise<Buffer | null>;
  /** Wakes the callers waiting on a re-render (a message on `renderedChannel`). */
  onRendered(text: string): void;
  /** Callers waiting on a re-render get an answer now rather than at their timeout. */
  close(): void;
}

/**
 * A finished grid's PNGs: read from storage, or, when they were dropped (IMAGE_TTL, the byte
 * budget), made again from the record through the generate queue and awaited.
 */
export function createGridImages(
  ctx: JobsContext,
  renderWaitMs: number,
  ensureSubscriber: () => RedisClient,
): GridImages {
  const { client, keys, logger } = ctx;
  const renderWaiters = new Map<string, Set<(message: RenderedMessage) => void>>();
  let renderSubscription: Promise<unknown> | undefined;

  async function gridPngNow(id: string): Promise<Buffer | null> {
    return pngOrRender(id, keys.grid(id));
  }
  /** A stored PNG, or, for a finished grid whose PNGs were dropped (TTL, budget), the re-rendered one. */
  async function pngOrRender(id: string, key: string, index?: number): Promise<Buffer | null> {
    const png = await client.getBuffer(key);
    if (png !== null) return png;
    const record = await loadRecord(client, keys, id);
    if (record === null || record.state.status.state !== 'done') return null;
    if (
      index !== undefined &&
      index >= (record.result?.resultKeys.images.length ?? record.spec.prompts.length)
    )
      return null;
    await rerender(id, key, record.spec.model);
    return client.getBuffer(key);
  }

  /**
   * Makes a finished grid's PNGs again through the generate queue and waits for them. The job is
   * deduplicated by grid id (BullMQ deduplication, until it ends), so concurrent presses make one;
   * LIFO, so a person waiting on a button goes before the queue.
   */
  /** Refuses a re-render of a team that already has its share waiting (see MAX_WAITING_RENDERS_PER_TEAM). */
  async function checkTeamRenders(id: string, model: string | undefined): Promise<void> {
    const record = await loadRecord(client, keys, id);
    if (record === null) return;
    const team = fairTeam(record.spec.origin);
    const waiting = (await ctx.queueFor(model).getWaiting(0, RENDER_SCAN - 1))
      .filter((job) => job.name === RENDER_JOB)
      .map((job) => (job.data as unknown as RenderJobData).render);
    // This grid's own render already waiting: the add below joins it (deduplicated).
    if (waiting.includes(id)) return;
    let mine = 0;
    for (const other of waiting) {
      const grid = await loadRecord(client, keys, other);
      if (grid !== null && fairTeam(grid.spec.origin) === team) mine++;
    }
    if (mine >= MAX_WAITING_RENDERS_PER_TEAM) {
      throw new UserError(
        ErrorCode.RateLimited,
        `${mine} images of this team are already being made again (they had been cleared from storage); try this one again in a minute.`,
        { retryAfterSeconds: 60, context: { id, team, waiting: mine } },
      );
    }
  }

  async function rerender(id: string, key: string, model: string | undefined): Promise<void> {
    let wake: (message: RenderedMessage) => void = () => {};
    const ended = new Promise<RenderedMessage>((resolve) => {
      wake = resolve;
    });
    let waiters = renderWaiters.get(id);
    if (waiters === undefined) {
      waiters = new Set();
      renderWaiters.set(id, waiters);
    }
    waiters.add(wake);
    let timer: NodeJS.Timeout | undefined;
    try {
      renderSubscription ??= ensureSubscriber()
        .subscribe(keys.renderedChannel)
        .catch((error: unknown) => {
          renderSubscription = undefined;
          throw error;
        });
      await renderSubscription;
      // Made by another caller's job between the first read and the subscription.
      if ((await client.exists(key)) === 1) return;
      await checkTeamRenders(id, model);
      const data: RenderJobData = { render: id };
      // On the grid's model's queue: only a worker with that model can make the same pictures.
      await ctx.queueFor(model).add(RENDER_JOB, data as unknown as JobSpec, {
        deduplication: { id: `render:${id}` },
        lifo: true,
        removeOnComplete: true,
        removeOnFail: { age: 86_400 },
      });
      logger.info({ jobId: id }, 'PNGs of a finished grid are gone: making them again');
      const timeout = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), renderWaitMs);
      });
      const message = await Promise.race([ended, timeout]);
      if (message === undefined) {
        throw new UserError(
          ErrorCode.Unavailable,
          `This image is being made again (it had been cleared from storage) and is not ready yet. Please try again in about a minute.`,
          { retryAfterSeconds: 60, context: { id } },
        );
      }
      if (!message.ok) {
        if (message.userFacing === true) {
          throw new UserError(ErrorCode.Expired, message.reason ?? 'This image can no longer be made.', {
            context: { id },
          });
        }
        throw new InternalError(ErrorCode.Inference, `re-rendering ${id} failed: ${message.reason ?? ''}`, {
          context: { id },
        });
      }
    } finally {
      clearTimeout(timer);
      waiters.delete(wake);
      if (waiters.size === 0) renderWaiters.delete(id);
    }
  }

  async function imagePngNow(id: string, index: number): Promise<Buffer | null> {
    if (!Number.isInteger(index) || index < 0) return null;
    return pngOrRender(id, keys.image(id, index), index);
  }

  function onRendered(text: string): void {
    let message: RenderedMessage;
    try {
      message = JSON.parse(text) as RenderedMessage;
    } catch (error) {
      logger.warn({ err: error }, 'unreadable rendered message dropped');
      return;
    }
    for (const wake of renderWaiters.get(message.id) ?? []) wake(message);
  }

  function close(): void {
    for (const [id, waiters] of renderWaiters) {
      for (const wake of waiters) wake({ id, ok: false, reason: 'the jobs client closed' });
    }
  }

  return { gridPngNow, imagePngNow, onRendered, close };
}
