import { describe, expect, it } from 'vitest';
import { type GridBatch, imagineBatch, settingsOf, specFrom } from '../../core/batch.ts';
import { DEFAULT_SUFFIXES } from '../../core/config.ts';
import { JOB_SPEC_VERSION, parseJobSpec } from '../../core/jobspec.ts';
import { refine, reroll } from '../../core/refine.ts';
import type { ImagineRequest } from '../../core/request.ts';
import { gridSeeds } from '../../core/seeds.ts';

/** `specFrom`: the one place a job spec is made, for every kind. */

const origin = {
  surface: 'discord' as const,
  user: 'u1',
  userName: 'Ada',
  channel: 'c1',
  interactionId: 'i1',
  messageRef: { token: 't1' },
};

const request: ImagineRequest = {
  prompt: 'a lighthouse',
  negative: 'blurry',
  steps: 20,
  guidance: 6.5,
  sampler: 'euler_a',
  width: 576,
  height: 384,
};

describe('specFrom', () => {
  it('imagine: the prompt once per seed, the settings, the origin and the time, a valid spec', () => {
    const spec = specFrom(imagineBatch(request, gridSeeds(7)), { origin, requestedAt: 1234 });
    expect(spec).toEqual({
      v: JOB_SPEC_VERSION,
      kind: 'imagine',
      prompts: ['a lighthouse', 'a lighthouse', 'a lighthouse', 'a lighthouse'],
      seeds: [7, 8, 9, 10],
      negative: 'blurry',
      sampler: 'euler_a',
      steps: 20,
      guidance: 6.5,
      width: 576,
      height: 384,
      origin,
      requestedAt: 1234,
    });
    expect(parseJobSpec(spec).ok).toBe(true);
  });

  it('refine and reroll of a finished spec keep its settings and name the parent grid', () => {
    const parent = specFrom(imagineBatch(request, gridSeeds(7)), { origin, requestedAt: 1 });
    // A parsed spec is itself a batch: what the service refines from a record.
    const parsed = parseJobSpec(parent);
    if (!parsed.ok) throw new Error(parsed.message);
    const grid: GridBatch = parsed.spec;
    const from = { origin: { ...origin, interactionId: 'p1' }, requestedAt: 2, parentId: 'discord-i1' };

    const refined = specFrom(refine(grid, 2, DEFAULT_SUFFIXES), from);
    expect(refined).toMatchObject({
      kind: 'refine',
      parent: { gridId: 'discord-i1', index: 2 },
      seeds: [9, 9, 9, 9],
      prompts: DEFAULT_SUFFIXES.map((s) => `a lighthouse${s}`),
      ...settingsOf(request),
      requestedAt: 2,
    });
    expect(parseJobSpec(refined).ok).toBe(true);

    const rerolled = specFrom(reroll(grid, 100), from);
    expect(rerolled).toMatchObject({
      kind: 'reroll',
      parent: { gridId: 'discord-i1' },
      seeds: [100, 101, 102, 103],
    });
    expect(rerolled.parent).not.toHaveProperty('index');
    expect(parseJobSpec(rerolled).ok).toBe(true);
  });

  it('copies what it is given: later changes to the batch or origin never reach the spec', () => {
    const seeds = [1, 2, 3, 4];
    const messageRef: Record<string, string> = { token: 't1' };
    const spec = specFrom(imagineBatch(request, seeds), {
      origin: { ...origin, messageRef },
      requestedAt: 1,
    });
    seeds[0] = 99;
    messageRef.token = 'changed';
    expect(spec.seeds).toEqual([1, 2, 3, 4]);
    expect(spec.origin.messageRef).toEqual({ token: 't1' });
  });

  it('a refine without its parent grid is made, and refused by the schema (the queue answers it)', () => {
    const spec = specFrom(refine(imagineBatch(request, gridSeeds(0)), 0, DEFAULT_SUFFIXES), {
      origin,
      requestedAt: 1,
    });
    const parsed = parseJobSpec(spec);
    expect(parsed.ok).toBe(false);
    expect(parsed.ok ? '' : parsed.message).toMatch(/parent: a refine job needs its parent grid/);
  });
});
