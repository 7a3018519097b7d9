import type { RequestLimits } from '../../core/config.ts';
import type {
  DefaultsLayer,
  GenerationDefaults,
  ModelGenerationDefaults,
} from '../../core/generation-defaults.ts';
import { servedModels } from '../../core/request.ts';
import { type EffectiveSettings, limitsWith } from '../../core/team-settings.ts';
import type { Jobs } from '../../queue/index.ts';
import type { ResolvedSettings } from '../settings/store.ts';
import type { ServiceContext } from './context.ts';
import type { ServiceSettings } from './settings.ts';
import { globalSettingsOf } from './team.ts';

/**
 * A model's own generation defaults, as the workers serving it announce them (the bot and the worker
 * may be different processes on different hosts). Kept per model in each bot process and read again
 * every few seconds, not per command: announcements change only when a worker starts, stops or loads a
 * model. A command never waits on Redis for them beyond `MODEL_DEFAULTS_WAIT_MS`: a slow or unreachable
 * Redis must not hold up its acknowledgement, so it goes on with the last value read (built-in defaults
 * on a cold start), and the read, still running, serves the commands after it.
 */

/** How long a value is used before it is read again. Well under the announcement's 15 s TTL. */
export const MODEL_DEFAULTS_CACHE_MS = 5000;
/** Longest a command waits for a read (a first one, or one of a stale value) before going on without it. */
export const MODEL_DEFAULTS_WAIT_MS = 150;

/** Longest `/imagine` waits to learn whether any worker serves its model (a hint for the user). */
export const MODEL_SERVED_WAIT_MS = 250;

interface Entry {
  /** The last value read (null: none announced); undefined until a read has succeeded. */
  value: ModelGenerationDefaults | null | undefined;
  /** When the last read started; -Infinity after a failure, so the next command asks again. */
  at: number;
  reading: Promise<void> | undefined;
}

const caches = new WeakMap<Jobs, Map<string, Entry>>();

/**
 * The layer a model's defaults add (core/generation-defaults.ts); empty when no worker has announced
 * any, they can't be read, or the first read is still under way, so the built-in ones apply (logged,
 * not told to the user: a worker may be starting, and the job queues all the same).
 */
export async function modelDefaultsFor(ctx: ServiceContext, model: string): Promise<DefaultsLayer> {
  const read = ctx.jobs.modelDefaults?.bind(ctx.jobs);
  if (read === undefined) return {};
  let cache = caches.get(ctx.jobs);
  if (cache === undefined) {
    cache = new Map();
    caches.set(ctx.jobs, cache);
  }
  let entry = cache.get(model);
  if (entry === undefined) {
    entry = { value: undefined, at: Number.NEGATIVE_INFINITY, reading: undefined };
    cache.set(model, entry);
  }
  const now = ctx.now();
  if (entry.reading === undefined && now - entry.at >= MODEL_DEFAULTS_CACHE_MS) {
    entry.reading = refresh(ctx, entry, model, read, now);
  }
  if (entry.reading !== undefined) await within(entry.reading, MODEL_DEFAULTS_WAIT_MS);
  return entry.value ?? {};
}

async function refresh(
  ctx: ServiceContext,
  entry: Entry,
  model: string,
  read: (model: string) => Promise<ModelGenerationDefaults | null>,
  now: number,
): Promise<void> {
  entry.at = now;
  try {
    entry.value = await read(model);
    if (entry.value === null) {
      ctx.log.info({ model }, 'no worker has announced this model’s defaults: using the built-in defaults');
    }
  } catch (error) {
    entry.at = Number.NEGATIVE_INFINITY;
    ctx.log.warn({ err: error, model }, 'model defaults unavailable: using the built-in defaults');
  } finally {
    entry.reading = undefined;
  }
}

/** `work`'s value if it comes within `ms`, else undefined (the work goes on; this only stops waiting). */
export async function within<T>(work: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * What `/imagine` without flags runs with on each served model where no team sets anything (the
 * environment's DEFAULT_* over the model's own over the built-in ones), for the playground's info.
 */
export async function defaultsPerModel(
  jobs: Jobs,
  settings: ServiceSettings,
): Promise<Record<string, GenerationDefaults>> {
  const entries = await Promise.all(
    servedModels(settings.limits).map(async (name) => {
      const own = (await jobs.modelDefaults?.(name).catch(() => null)) ?? {};
      const d = limitsWith(settings.limits, globalSettingsOf(settings), { team: {}, model: own });
      const resolved: GenerationDefaults = {
        steps: d.defaultSteps,
        guidance: d.defaultGuidance,
        sampler: d.defaultSampler,
        width: d.defaultWidth,
        height: d.defaultHeight,
      };
      return [name, resolved] as const;
    }),
  );
  return Object.fromEntries(entries);
}

/**
 * A channel's effective settings with the steps, guidance and sampler `/imagine` without flags uses
 * there (for the settings views): the team's own where set, else the environment's DEFAULT_* where set,
 * else the model's (the team's model when served, else the default one), else the built-in ones.
 */
export async function effectiveHere(
  limits: RequestLimits,
  resolved: Pick<ResolvedSettings, 'effective' | 'teamDefaults'>,
  modelDefaults: (model: string) => Promise<DefaultsLayer | null>,
): Promise<EffectiveSettings> {
  const effective = resolved.effective;
  const served = servedModels(limits);
  const model =
    effective.model !== undefined && served.includes(effective.model) ? effective.model : served[0]!;
  const own = (await modelDefaults(model).catch(() => null)) ?? {};
  const applied = limitsWith(limits, effective, { team: resolved.teamDefaults, model: own });
  return {
    ...effective,
    steps: applied.defaultSteps,
    guidance: applied.defaultGuidance,
    sampler: applied.defaultSampler,
  };
}
