/** Seeds are unsigned 32-bit integers: what `torch.Generator.manual_seed` takes, which the engine's RNG mirrors. */
export const MAX_SEED = 0xffff_ffff;
const SEED_SPACE = 0x1_0000_0000;

/** Images per `/imagine` grid. */
export const GRID_SIZE = 4;

export function isSeed(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_SEED;
}

/**
 * Draws a base seed from a uniform [0, 1) source. The source is injected (crypto in production,
 * a fixed stream in tests) so this module stays pure.
 */
export function drawBaseSeed(random: () => number): number {
  return Math.floor(random() * SEED_SPACE) % SEED_SPACE;
}

/**
 * Seeds base, base+1, … (mod 2^32): image k of a grid uses seed base+k. This is diffusers' deterministic
 * batch generation (one generator per image, seeded 0..3 in its example), so any one image can be made
 * again, alone, from its seed.
 */
export function gridSeeds(base: number, count: number = GRID_SIZE): number[] {
  if (!isSeed(base)) throw new RangeError(`base seed must be an integer in [0, ${MAX_SEED}], got ${base}`);
  return Array.from({ length: count }, (_, k) => (base + k) % SEED_SPACE);
}
