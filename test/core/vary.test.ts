import { describe, expect, it } from 'vitest';
import { specFrom } from '../../core/batch.ts';
import { ErrorCode, UserError } from '../../core/errors.ts';
import {
  IMAGE_SPEC_VERSION,
  JOB_SPEC_VERSION,
  MAX_INIT_IMAGE_BYTES,
  MAX_INIT_IMAGE_PIXELS,
  parseJobSpec,
} from '../../core/jobspec.ts';
import { reroll } from '../../core/refine.ts';
import { isVaryStrength, UPSCALE_STRENGTH, upscale2x, VARY_STRENGTHS, vary } from '../../core/vary.ts';
import * as engineLimits from '../../models/init-image.ts';
import { makeSpec } from '../queue/helpers.ts';

const grid = {
  prompts: ['a fox', 'a bird', 'a cat', 'a dog'],
  seeds: [10, 11, 12, 13],
  negative: 'blurry',
  sampler: 'euler_a' as const,
  steps: 20,
  guidance: 7.5,
  width: 512,
  height: 384,
};
const origin = { origin: makeSpec().origin, requestedAt: 1, parentId: 'discord-grid1' };

describe('vary and upscale ×2 (pure)', () => {
  it('keep the grid’s steps, or take the fewest that run a denoising step (a 1-step Turbo grid)', () => {
    expect(vary(grid, 'discord-grid1', 0, 'subtle', 1).steps).toBe(20);
    expect(upscale2x(grid, 'discord-grid1', 0, 4096 * 4096).steps).toBe(20);
    const turbo = { ...grid, steps: 1, guidance: 0 };
    // diffusers runs int(steps × strength) steps: 3 × 0.35, 2 × 0.6 and 3 × 0.4 each run one.
    expect(vary(turbo, 'discord-grid1', 0, 'subtle', 1).steps).toBe(3);
    expect(vary(turbo, 'discord-grid1', 0, 'strong', 1).steps).toBe(2);
    expect(upscale2x(turbo, 'discord-grid1', 0, 4096 * 4096).steps).toBe(3);
    expect(upscale2x({ ...grid, steps: 2 }, 'discord-grid1', 0, 4096 * 4096).steps).toBe(3);
  });

  it('vary: image N’s prompt on seeds new_base..new_base+3, from image N at the named strength', () => {
    const batch = vary(grid, 'discord-grid1', 1, 'subtle', 4_294_967_294);
    expect(batch).toMatchObject({
      kind: 'vary',
      parentIndex: 1,
      prompts: ['a bird', 'a bird', 'a bird', 'a bird'],
      seeds: [4_294_967_294, 4_294_967_295, 0, 1],
      init: { from: 'grid', gridId: 'discord-grid1', index: 1 },
      strength: 0.35,
      width: 512,
      height: 384,
    });
    expect(vary(grid, 'discord-grid1', 1, 'strong', 7).strength).toBe(0.6);
    expect(VARY_STRENGTHS).toEqual({ subtle: 0.35, strong: 0.6 });
    expect(isVaryStrength('strong')).toBe(true);
    expect(isVaryStrength('toString')).toBe(false);
    const spec = specFrom(batch, origin);
    expect(spec).toMatchObject({ v: IMAGE_SPEC_VERSION, parent: { gridId: 'discord-grid1', index: 1 } });
    expect(parseJobSpec(spec).ok).toBe(true);
    expect(() => vary(grid, 'discord-grid1', 4, 'subtle', 1)).toThrow(
      'This grid has images 1 to 4; there is no image 5.',
    );
  });

  it('upscale ×2: the image’s own prompt and seed at twice the size; over the pixel limit refused before queueing', () => {
    const batch = upscale2x(grid, 'discord-grid1', 2, 1024 * 1024);
    expect(batch).toMatchObject({
      kind: 'upscale',
      prompts: ['a cat'],
      seeds: [12],
      width: 1024,
      height: 768,
      strength: UPSCALE_STRENGTH,
      init: { from: 'grid', gridId: 'discord-grid1', index: 2 },
    });
    expect(parseJobSpec(specFrom(batch, origin)).ok).toBe(true);
    let error: unknown;
    try {
      upscale2x(grid, 'discord-grid1', 2, 768 * 768);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UserError);
    expect(error).toMatchObject({ code: ErrorCode.InvalidRequest });
    expect((error as Error).message).toBe(
      "Upscale ×2 would make 1024x768 (786432 pixels); the limit here is 589824 pixels and 4096 per side, so this 512x384 image can't be upscaled.",
    );
  });

  it('a reroll of a vary grid keeps its picture and strength; old text-to-image specs still parse', () => {
    const varied = specFrom(vary(grid, 'discord-grid1', 0, 'strong', 100), origin);
    const parsed = parseJobSpec(varied);
    if (!parsed.ok) throw new Error(parsed.message);
    const again = reroll(parsed.spec, 900);
    expect(again).toMatchObject({ init: { from: 'grid', gridId: 'discord-grid1', index: 0 }, strength: 0.6 });
    expect(specFrom(again, { ...origin, parentId: 'discord-vary' }).v).toBe(IMAGE_SPEC_VERSION);
    // Text-to-image specs keep version 1 (workers from before image-to-image still run them).
    expect(specFrom(reroll(grid, 5), origin).v).toBe(JOB_SPEC_VERSION);
    expect(parseJobSpec(makeSpec()).ok).toBe(true);
  });

  it('the queue checks uploads against the engine’s own limits', () => {
    expect(MAX_INIT_IMAGE_BYTES).toBe(engineLimits.MAX_INIT_IMAGE_BYTES);
    expect(MAX_INIT_IMAGE_PIXELS).toBe(engineLimits.MAX_INIT_IMAGE_PIXELS);
  });

  it('the schema: init and strength go together, with version 2; vary and upscale start from their parent image', () => {
    const plain = makeSpec();
    const init = { from: 'grid' as const, gridId: 'discord-g', index: 0 };
    const fail = (value: unknown) => {
      const r = parseJobSpec(value);
      return r.ok ? 'ok' : r.message;
    };
    expect(fail({ ...plain, v: 2, init })).toMatch(/strength: strength goes with an init image/u);
    expect(fail({ ...plain, v: 2, strength: 0.5 })).toMatch(/strength: strength goes with an init image/u);
    expect(fail({ ...plain, init, strength: 0.5 })).toMatch(/v: version 2 is for specs with an init image/u);
    expect(fail({ ...plain, v: 2, init, strength: 0 })).toMatch(/strength/u);
    expect(fail({ ...plain, v: 2, init, strength: 0.5 })).toBe('ok');
    expect(
      fail({ ...plain, v: 2, kind: 'vary', parent: { gridId: 'discord-g' }, init, strength: 0.5 }),
    ).toMatch(/parent\.index: a vary job needs the image index/u);
    expect(
      fail({
        ...plain,
        v: 2,
        kind: 'upscale',
        parent: { gridId: 'discord-h', index: 0 },
        init,
        strength: 0.4,
      }),
    ).toMatch(/init: a upscale job starts from its parent's image/u);
    expect(
      fail({
        ...plain,
        v: 2,
        init: { from: 'upload', sha256: 'A'.repeat(64), bytes: 10, width: 1, height: 1, mime: 'image/png' },
        strength: 0.5,
      }),
    ).toMatch(/init\.sha256/u);
  });
});
