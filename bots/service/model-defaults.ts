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
 * may be different processes on different hosts). Asked once per model every few seconds, not per
 * command: announcements change only when a worker starts, stops or loads a model.
 */

/** How long an answer is reused. Well under the announcement's 15 s TTL, so a new worker shows soon. */
export const MODEL_DEFAULTS_CACHE_MS = 5000;

interface Cached {
  readonly at: number;
  readonly value: Promise<ModelGenerationDefaults | null>;
}

const caches = new WeakMap<Jobs, Map<string, Cached>>();

/**
 * The layer a model's defaults add (core/generation-defaults.ts); empty when no worker has announced
 * any or they can't be read, so the built-in ones apply (logged, not told to the user: a worker may be
 * starting, and the job queues all the same).
 */
export async function modelDefaultsFor(ctx: ServiceContext, model: string): Promise<DefaultsLayer> {
  const read = ctx.jobs.modelDefaults?.bind(ctx.jobs);
  if (read === undefined) return {};
  let cache = caches.get(ctx.jobs);
  if (cache === undefined) {
    cache = new Map();
    caches.set(ctx.jobs, cache);
  }
  const now = ctx.now();
  const cached = cache.get(model);
  if (cached !== undefined && now - cached.at < MODEL_DEFAULTS_CACHE_MS) return (await cached.value) ?? {};
  let failed = false;
  const entry: Cached = {
    at: now,
    value: read(model).catch((error: unknown) => {
      failed = true;
      ctx.log.warn({ err: error, model }, 'model defaults unavailable: using the built-in defaults');
      // Not cached: the next command asks again.
      if (cache.get(model) === entry) cache.delete(model);
      return null;
    }),
  };
  cache.set(model, entry);
  const announced = await entry.value;
  if (announced === null && !failed) {
    ctx.log.info({ model }, 'no worker has announced this model’s defaults: using the built-in defaults');
  }
  return announced ?? {};
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
