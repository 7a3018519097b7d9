import { type GridBatch, imageOf, type NextBatch, settingsOf } from './batch.ts';
import { ErrorCode, UserError } from './errors.ts';
import { stepsForStrength } from './image-prompt.ts';
import { GRID_SIZE, gridSeeds } from './seeds.ts';

/**
 * Refinement by picture: Vary (four new seeds on one image, image-to-image from it) and Upscale ×2 (one
 * image at twice the size, image-to-image from it resized). Both are pure functions of the parent grid's
 * spec, like refine and reroll, so the same button on the same grid makes the same job.
 */

/** Vary's two settings: how much of the schedule reruns from the picture (diffusers' `strength`). */
export const VARY_STRENGTHS = { subtle: 0.35, strong: 0.6 } as const;
export type VaryStrength = keyof typeof VARY_STRENGTHS;
export const VARY_STRENGTH_NAMES = Object.keys(VARY_STRENGTHS) as readonly VaryStrength[];

export function isVaryStrength(value: unknown): value is VaryStrength {
  return typeof value === 'string' && Object.hasOwn(VARY_STRENGTHS, value);
}

/** Upscale's size factor per side. */
export const UPSCALE_FACTOR = 2;
/**
 * Upscale's strength ("hires fix"): high enough to redraw the detail a resize blurs, low enough to keep
 * the composition; 0.4 is the middle of what A1111's hires fix is commonly run at (0.3–0.5).
 */
export const UPSCALE_STRENGTH = 0.4;

/** The spec's largest side (core/jobspec.ts). */
const MAX_SIDE = 4096;

/**
 * Four variations of image `index` of grid `gridId`: its prompt on seeds newBase..newBase+3, each
 * starting from that image at the strength named, with the grid's steps (or the fewest that run a
 * denoising step at that strength: a 1-step Turbo grid varies with 3).
 */
export function vary(
  grid: GridBatch,
  gridId: string,
  index: number,
  strength: VaryStrength,
  newBaseSeed: number,
): NextBatch {
  const { prompt } = imageOf(grid, index);
  return {
    ...settingsOf(grid),
    kind: 'vary',
    parentIndex: index,
    prompts: Array.from({ length: GRID_SIZE }, () => prompt),
    seeds: gridSeeds(newBaseSeed, GRID_SIZE),
    init: { from: 'grid', gridId, index },
    strength: VARY_STRENGTHS[strength],
    steps: stepsForStrength(grid.steps, VARY_STRENGTHS[strength]),
  };
}

/**
 * Image `index` of grid `gridId` at twice the size: its own prompt and seed, starting from the image
 * resized (Lanczos-3) at UPSCALE_STRENGTH. Refused, before anything is queued, when twice the size is
 * over the pixel limit.
 */
export function upscale2x(grid: GridBatch, gridId: string, index: number, maxPixels: number): NextBatch {
  const { prompt, seed } = imageOf(grid, index);
  const width = grid.width * UPSCALE_FACTOR;
  const height = grid.height * UPSCALE_FACTOR;
  if (width * height > maxPixels || width > MAX_SIDE || height > MAX_SIDE) {
    throw new UserError(
      ErrorCode.InvalidRequest,
      `Upscale ×${UPSCALE_FACTOR} would make ${width}x${height} (${width * height} pixels); the limit here is ${maxPixels} pixels and ${MAX_SIDE} per side, so this ${grid.width}x${grid.height} image can't be upscaled.`,
      { context: { width, height, maxPixels } },
    );
  }
  return {
    ...settingsOf(grid),
    kind: 'upscale',
    parentIndex: index,
    width,
    height,
    prompts: [prompt],
    seeds: [seed],
    init: { from: 'grid', gridId, index },
    strength: UPSCALE_STRENGTH,
    steps: stepsForStrength(grid.steps, UPSCALE_STRENGTH),
  };
}
