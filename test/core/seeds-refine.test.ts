import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SUFFIXES } from '../../core/config.ts';
import { UserError } from '../../core/errors.ts';
import { type GridBatch, refine, reroll } from '../../core/refine.ts';
import { drawBaseSeed, gridSeeds, isSeed, MAX_SEED } from '../../core/seeds.ts';

const grid: GridBatch = {
  prompts: ['a cat', 'a cat', 'a cat', 'a cat'],
  seeds: [0, 1, 2, 3],
  negative: 'blurry',
  sampler: 'euler_a',
  steps: 20,
  guidance: 7,
  width: 512,
  height: 448,
};

describe('seeds', () => {
  it('gives base..base+3: one seed per image, as diffusers seeds one generator per image', () => {
    expect(gridSeeds(0)).toEqual([0, 1, 2, 3]);
    expect(gridSeeds(42)).toEqual([42, 43, 44, 45]);
  });

  it('wraps around at 2^32', () => {
    expect(gridSeeds(MAX_SEED - 1)).toEqual([4294967294, 4294967295, 0, 1]);
    expect(gridSeeds(MAX_SEED)).toEqual([4294967295, 0, 1, 2]);
  });

  it('rejects invalid bases', () => {
    expect(() => gridSeeds(-1)).toThrow(RangeError);
    expect(() => gridSeeds(2 ** 32)).toThrow(RangeError);
    expect(() => gridSeeds(1.5)).toThrow(RangeError);
  });

  it('draws valid seeds over the whole range', () => {
    expect(drawBaseSeed(() => 0)).toBe(0);
    expect(drawBaseSeed(() => 0.9999999999999999)).toBe(MAX_SEED);
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (u) => {
        expect(isSeed(drawBaseSeed(() => u))).toBe(true);
      }),
    );
  });

  it('always yields 4 consecutive valid seeds', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_SEED }), (base) => {
        const seeds = gridSeeds(base);
        expect(seeds).toHaveLength(4);
        seeds.forEach((s, k) => {
          expect(isSeed(s)).toBe(true);
          expect(s).toBe((base + k) % 2 ** 32);
        });
      }),
    );
  });
});

describe('refine', () => {
  it('is the second round of deterministic batch generation: prompt n + each suffix, all on seed n', () => {
    const next = refine(grid, 1, DEFAULT_SUFFIXES);
    expect(next.prompts).toEqual([
      'a cat, highly realistic',
      'a cat, artsy',
      'a cat, trending',
      'a cat, colorful',
    ]);
    expect(next.seeds).toEqual([1, 1, 1, 1]);
    expect(next.kind).toBe('refine');
    expect(next.parentIndex).toBe(1);
    expect(next).toMatchObject({
      negative: 'blurry',
      sampler: 'euler_a',
      steps: 20,
      guidance: 7,
      width: 512,
      height: 448,
    });
  });

  it('chains: refining a refined image carries its suffix', () => {
    const first = refine(grid, 2, DEFAULT_SUFFIXES);
    const second = refine(first, 1, DEFAULT_SUFFIXES);
    expect(second.prompts[0]).toBe('a cat, artsy, highly realistic');
    expect(second.prompts[3]).toBe('a cat, artsy, colorful');
    expect(second.seeds).toEqual([2, 2, 2, 2]);
  });

  it('accepts 1 to 4 suffixes and rejects other lengths', () => {
    expect(refine(grid, 0, [', x']).prompts).toEqual(['a cat, x']);
    expect(() => refine(grid, 0, [])).toThrow(RangeError);
    expect(() => refine(grid, 0, ['a', 'b', 'c', 'd', 'e'])).toThrow(RangeError);
  });

  it('rejects an image index that the grid does not have, with the allowed range', () => {
    const small = refine(grid, 0, [', x', ', y']);
    expect(() => refine(small, 3, DEFAULT_SUFFIXES)).toThrow(UserError);
    expect(() => refine(small, 3, DEFAULT_SUFFIXES)).toThrow(/images 1 to 2; there is no image 4/);
    expect(() => refine(grid, -1, DEFAULT_SUFFIXES)).toThrow(UserError);
    expect(() => refine(grid, 0.5, DEFAULT_SUFFIXES)).toThrow(UserError);
  });

  it('property: image k of a refine is (prompt_n + suffix_k, seed_n)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ minLength: 1, maxLength: 20 }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 0, max: MAX_SEED }),
        fc.array(fc.string({ maxLength: 10 }), { minLength: 1, maxLength: 4 }),
        fc.nat(),
        (prompts, base, suffixes, pick) => {
          const g: GridBatch = { ...grid, prompts, seeds: gridSeeds(base, prompts.length) };
          const n = pick % prompts.length;
          const next = refine(g, n, suffixes);
          expect(next.prompts).toEqual(suffixes.map((s) => prompts[n] + s));
          expect(next.seeds).toEqual(suffixes.map(() => g.seeds[n]));
        },
      ),
    );
  });
});

describe('reroll', () => {
  it('keeps prompts and settings, draws new consecutive seeds', () => {
    const next = reroll(grid, MAX_SEED);
    expect(next.kind).toBe('reroll');
    expect(next.prompts).toEqual(grid.prompts);
    expect(next.seeds).toEqual([MAX_SEED, 0, 1, 2]);
    expect(next).toMatchObject({ negative: 'blurry', steps: 20, width: 512, height: 448 });
  });

  it('keeps the per-image prompts of a refined grid', () => {
    const refined = refine(grid, 0, DEFAULT_SUFFIXES);
    expect(reroll(refined, 10).prompts).toEqual(refined.prompts);
    expect(reroll(refined, 10).seeds).toEqual([10, 11, 12, 13]);
  });
});
