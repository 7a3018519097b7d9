import { type GridBatch, imageOf, type NextBatch, settingsOf } from './batch.ts';
import { GRID_SIZE, gridSeeds } from './seeds.ts';

export type { GridBatch, NextBatch } from './batch.ts';

export const MAX_SUFFIXES = GRID_SIZE;

export function validateSuffixes(suffixes: readonly string[]): void {
  if (suffixes.length < 1 || suffixes.length > MAX_SUFFIXES) {
    throw new RangeError(`a suffix list has 1 to ${MAX_SUFFIXES} entries, got ${suffixes.length}`);
  }
}

/**
 * The second round of diffusers' deterministic batch generation: image `index` (0-based) again, once
 * per suffix, every image on that image's seed (its generator reused), so only the prompt changes.
 * Prompts are `prompt_n + suffix`, so refining a refined image chains suffixes.
 */
export function refine(grid: GridBatch, index: number, suffixes: readonly string[]): NextBatch {
  validateSuffixes(suffixes);
  const { prompt, seed } = imageOf(grid, index);
  return {
    ...settingsOf(grid),
    kind: 'refine',
    parentIndex: index,
    prompts: suffixes.map((s) => prompt + s),
    seeds: suffixes.map(() => seed),
  };
}

/**
 * Same prompts and settings, new seeds base..base+n-1. A refined grid (one prompt per suffix) keeps its
 * per-image prompts, so a reroll explores new seeds for each variant.
 */
export function reroll(grid: GridBatch, newBaseSeed: number): NextBatch {
  return {
    ...settingsOf(grid),
    kind: 'reroll',
    prompts: [...grid.prompts],
    seeds: gridSeeds(newBaseSeed, grid.prompts.length),
  };
}
