import { type ModelGenerationDefaults, modelDefaultsSchema } from '../core/generation-defaults.ts';
import type { RedisClient } from './connection.ts';
import type { QueueKeys } from './keys.ts';
import type { QueueLogger } from './logger.ts';

/**
 * Which workers serve which models. A worker writes one key per model it serves (value: the model's
 * revision) with a short TTL, refreshed well within it, and adds its id to the model's set; a worker
 * that dies stops refreshing and drops out within the TTL (Redis' clock, so host clocks don't matter).
 * With it, the model's generation defaults, so bots on other hosts apply them to `/imagine` without flags.
 */

/** How long an announcement lasts without a refresh. A restarting worker is still counted meanwhile. */
export const ANNOUNCE_TTL_MS = 15_000;

/** A served model as a worker announces it. */
export interface Announced {
  readonly name: string;
  /** The revision of its files (see models/revision.ts); '' when unknown. */
  readonly revision: string;
  /** Its own generation defaults (imagine.json, else known by family); absent when not known yet. */
  readonly defaults?: ModelGenerationDefaults;
}

/**
 * The defaults announced for `model` by a live worker serving it; null when none announced any (no
 * worker, or none knows them yet). Another process wrote them: a value that fails the schema is
 * reported through `onInvalid` and treated as none.
 */
export async function servedDefaults(
  client: RedisClient,
  keys: QueueKeys,
  model: string,
  onInvalid: (problem: string) => void,
): Promise<ModelGenerationDefaults | null> {
  const text = await client.get(keys.servedDefaults(model));
  if (text === null) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    onInvalid('not JSON');
    return null;
  }
  const parsed = modelDefaultsSchema.safeParse(value);
  if (!parsed.success) {
    onInvalid(parsed.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; '));
    return null;
  }
  return parsed.data;
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

/**
 * Announces `models` now and every third of the TTL until stopped; stopping withdraws them. A function
 * is asked again at every refresh (a model's defaults become known when it loads).
 */
export async function announceModels(
  client: RedisClient,
  keys: QueueKeys,
  workerId: string,
  announced: readonly Announced[] | (() => readonly Announced[]),
  logger: QueueLogger,
  ttlMs: number = ANNOUNCE_TTL_MS,
): Promise<{ stop(): Promise<void> }> {
  const current = () => (typeof announced === 'function' ? announced() : announced);
  const write = async () => {
    const multi = client.multi();
    for (const model of current()) {
      multi.set(keys.servedBy(model.name, workerId), model.revision, 'PX', ttlMs);
      multi.sadd(keys.served(model.name), workerId);
      // Workers serving one model share the key (same folder, same defaults); it lapses with the last.
      if (model.defaults !== undefined) {
        multi.set(keys.servedDefaults(model.name), JSON.stringify(model.defaults), 'PX', ttlMs);
      }
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
      // The defaults key stays until its TTL: another worker may serve the same model.
      for (const model of current()) {
        multi.del(keys.servedBy(model.name, workerId));
        multi.srem(keys.served(model.name), workerId);
      }
      await multi.exec().catch(() => undefined);
    },
  };
}
