import { z } from 'zod';
import { SAMPLERS, type SamplerName } from './samplers.ts';

/**
 * The generation defaults an `/imagine` without flags runs with (steps, guidance, sampler, size), and
 * where each comes from. Highest first:
 *
 * 1. the user's own flags (the request parser, core/request.ts);
 * 2. the channel's team setting, then the workspace's, when one set it (core/team-settings.ts);
 * 3. the environment's DEFAULT_*, only when set there (core/config.ts);
 * 4. the chosen model's own defaults (its imagine.json, or known by family; its workers announce them);
 * 5. the built-in defaults below.
 *
 * So a deployment that sets nothing gives each model its own good defaults (Turbo: 1 step, guidance 0,
 * 512²), and a setting someone made on purpose still wins. Pure: callers gather the layers.
 */

export interface GenerationDefaults {
  readonly steps: number;
  readonly guidance: number;
  readonly sampler: SamplerName;
  readonly width: number;
  readonly height: number;
}

/** One source's defaults: only what it sets. */
export type DefaultsLayer = { readonly [K in keyof GenerationDefaults]?: GenerationDefaults[K] | undefined };

/** What applies when no source sets a value: SD 1.5 as plain diffusers runs it (so seeds transfer). */
export const BUILT_IN_DEFAULTS: GenerationDefaults = {
  steps: 25,
  guidance: 7.5,
  sampler: 'pndm',
  width: 512,
  height: 512,
};

/**
 * The pixel limit when MAX_PIXELS is not set (768², SD 2.1 768's size). Unset, a model's own default
 * size raises it on that model (SDXL's 1024² works out of the box); set, MAX_PIXELS is an operator's
 * compute cap and wins (`fitToPixels`).
 */
export const BUILT_IN_MAX_PIXELS = 768 * 768;

/**
 * The largest size with `width`×`height`'s aspect (as near as multiples of 8 allow) whose area fits
 * `maxPixels`, each side a multiple of 8 and at least 64; the size itself when it fits already.
 */
export function fitToPixels(
  width: number,
  height: number,
  maxPixels: number,
): { width: number; height: number } {
  if (width * height <= maxPixels) return { width, height };
  const scale = Math.sqrt(maxPixels / (width * height));
  const side = (v: number) => Math.max(64, Math.floor((v * scale) / 8) * 8);
  let w = side(width);
  let h = side(height);
  // A side raised to 64 can push the area over: take it out of the other side.
  if (w * h > maxPixels) {
    if (w === 64) h = Math.max(64, Math.floor(maxPixels / w / 8) * 8);
    else w = Math.max(64, Math.floor(maxPixels / h / 8) * 8);
  }
  return { width: w, height: h };
}

/**
 * Each field from the first layer (highest first) that sets it, else the built-in value. Width and
 * height go together: they come from the first layer that sets both, so a size is never half one
 * source's and half another's.
 */
export function resolveDefaults(layers: readonly DefaultsLayer[]): GenerationDefaults {
  const first = <K extends 'steps' | 'guidance' | 'sampler'>(key: K): GenerationDefaults[K] => {
    for (const layer of layers) {
      const value = layer[key];
      if (value !== undefined) return value as GenerationDefaults[K];
    }
    return BUILT_IN_DEFAULTS[key];
  };
  const sized = layers.find((l) => l.width !== undefined && l.height !== undefined);
  return {
    steps: first('steps'),
    guidance: first('guidance'),
    sampler: first('sampler'),
    width: sized?.width ?? BUILT_IN_DEFAULTS.width,
    height: sized?.height ?? BUILT_IN_DEFAULTS.height,
  };
}

/**
 * A model's defaults as its workers announce them (queue/served.ts) and the bots read them: another
 * process wrote them, so they are checked on read. `sampler` is absent when the model's own scheduler
 * is not one this engine has (then the next source's applies).
 */
export const modelDefaultsSchema = z
  .object({
    steps: z.number().int().min(1).max(1000),
    guidance: z.number().min(0).max(30),
    width: z.number().int().min(64).max(8192).multipleOf(8),
    height: z.number().int().min(64).max(8192).multipleOf(8),
    sampler: z.enum(SAMPLERS).optional(),
  })
  .strict();

export type ModelGenerationDefaults = z.output<typeof modelDefaultsSchema>;
