import { type GridBatch, type NextBatch, settingsOf } from './batch.ts';
import { ErrorCode, UserError } from './errors.ts';
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
  const prompt = grid.prompts[index];
  const seed = grid.seeds[index];
  if (!Number.isInteger(index) || prompt === undefined || seed === undefined) {
    throw new UserError(
      ErrorCode.InvalidRequest,
      `This grid has images 1 to ${grid.prompts.length}; there is no image ${index + 1}.`,
    );
  }
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
