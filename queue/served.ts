import type { RedisClient } from './connection.ts';
import type { QueueKeys } from './keys.ts';
import type { QueueLogger } from './logger.ts';

/**
 * Which workers serve which models. A worker writes one key per model it serves (value: the model's
 * revision) with a short TTL, refreshed well within it, and adds its id to the model's set; a worker
 * that dies stops refreshing and drops out within the TTL (Redis' clock, so host clocks don't matter).
 */

/** How long an announcement lasts without a refresh. A restarting worker is still counted meanwhile. */
export const ANNOUNCE_TTL_MS = 15_000;

/** A served model as a worker announces it. */
export interface Announced {
  readonly name: string;
  /** The revision of its files (see models/revision.ts); '' when unknown. */
  readonly revision: string;
}

/** Revisions announced by the live workers serving `model` (one per worker); empty when none does. */
export async function servedRevisions(
  client: RedisClient,
  keys: QueueKeys,
  model: string,
): Promise<string[]> {
  const workers = await client.smembers(keys.served(model));
  if (workers.length === 0) return [];
  const values = await client.mget(workers.map((w) => keys.servedBy(model, w)));
  const gone = workers.filter((_, i) => values[i] === null);
  if (gone.length > 0) await client.srem(keys.served(model), ...gone);
  return values.filter((v): v is string => v !== null);
}

/** Announces `models` now and every third of the TTL until stopped; stopping withdraws them. */
export async function announceModels(
  client: RedisClient,
  keys: QueueKeys,
  workerId: string,
  models: readonly Announced[],
  logger: QueueLogger,
  ttlMs: number = ANNOUNCE_TTL_MS,
): Promise<{ stop(): Promise<void> }> {
  const write = async () => {
    const multi = client.multi();
    for (const model of models) {
      multi.set(keys.servedBy(model.name, workerId), model.revision, 'PX', ttlMs);
      multi.sadd(keys.served(model.name), workerId);
    }
    await multi.exec();
  };
  await write();
  const timer = setInterval(
    () => {
      write().catch((error: unknown) =>
        logger.warn({ err: error, workerId }, 'announcing served models failed'),
      );
    },
    Math.max(1, Math.floor(ttlMs / 3)),
  );
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      const multi = client.multi();
      for (const model of models) {
        multi.del(keys.servedBy(model.name, workerId));
        multi.srem(keys.served(model.name), workerId);
      }
      await multi.exec().catch(() => undefined);
    },
  };
}
