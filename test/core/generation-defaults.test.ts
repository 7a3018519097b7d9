import { describe, expect, it } from 'vitest';
import { loadConfig, type RequestLimits, requestLimitsFrom } from '../../core/config.ts';
import {
  BUILT_IN_DEFAULTS,
  type DefaultsLayer,
  fitToPixels,
  modelDefaultsSchema,
  resolveDefaults,
} from '../../core/generation-defaults.ts';
import { parseImagineText } from '../../core/request.ts';
import {
  type EffectiveSettings,
  effectiveSettings,
  limitsWith,
  maxPixelsFor,
  teamDefaultsLayer,
} from '../../core/team-settings.ts';

/** SD-Turbo's defaults as its worker announces them. */
const TURBO = { steps: 1, guidance: 0, width: 512, height: 512, sampler: 'euler_a' } as const;
/** SDXL's, past the default MAX_PIXELS (768²). */
const SDXL = { steps: 30, guidance: 5, width: 1024, height: 1024 } as const;

function global(limits: RequestLimits): EffectiveSettings {
  return {
    suffixes: [', a'],
    negative: '',
    sampler: limits.defaultSampler,
    steps: limits.defaultSteps,
    guidance: limits.defaultGuidance,
    ownerOnlyButtons: false,
    bannedWords: [],
    dailyQuota: 0,
    admins: [],
  };
}

/** What `/imagine <text>` parses to in a channel with these team overrides, on a model with these defaults. */
function imagine(
  text: string,
  options: {
    env?: Record<string, string>;
    workspace?: Parameters<typeof effectiveSettings>[1];
    channel?: Parameters<typeof effectiveSettings>[2];
    model?: DefaultsLayer;
  } = {},
) {
  const limits = requestLimitsFrom(loadConfig(options.env ?? {}));
  const settings = effectiveSettings(global(limits), options.workspace, options.channel);
  const team = teamDefaultsLayer(options.workspace, options.channel);
  const parsed = parseImagineText(
    text,
    limitsWith(limits, settings, { team, ...(options.model === undefined ? {} : { model: options.model }) }),
  );
  if (!parsed.ok) throw parsed.error;
  const { steps, guidance, sampler, width, height } = parsed.value;
  return { steps, guidance, sampler, width, height };
}

describe('resolveDefaults: the first source that sets a value wins, field by field', () => {
  it('falls back to the built-in defaults when no source sets anything', () => {
    expect(resolveDefaults([])).toEqual(BUILT_IN_DEFAULTS);
    expect(resolveDefaults([{}, {}])).toEqual({
      steps: 25,
      guidance: 7.5,
      sampler: 'pndm',
      width: 512,
      height: 512,
    });
  });

  it('takes each field from the highest source that sets it', () => {
    expect(resolveDefaults([{ steps: 4 }, { guidance: 2, steps: 9 }, TURBO])).toEqual({
      steps: 4,
      guidance: 2,
      sampler: 'euler_a',
      width: 512,
      height: 512,
    });
  });

  it('keeps width and height together: a source that sets only one does not split the size', () => {
    expect(resolveDefaults([{ width: 640 }, SDXL])).toMatchObject({ width: 1024, height: 1024 });
  });
});

describe('precedence for /imagine without flags', () => {
  it('nothing set anywhere: the model’s own defaults (Turbo: 1 step, guidance 0, 512², euler_a)', () => {
    expect(imagine('a cat', { model: TURBO })).toEqual({
      steps: 1,
      guidance: 0,
      sampler: 'euler_a',
      width: 512,
      height: 512,
    });
  });

  it('no model defaults known (no worker announced): the built-in ones', () => {
    expect(imagine('a cat')).toEqual(BUILT_IN_DEFAULTS);
  });

  it('a DEFAULT_* set in the environment beats the model’s; unset ones leave the model’s', () => {
    expect(imagine('a cat', { env: { DEFAULT_STEPS: '3' }, model: TURBO })).toEqual({
      steps: 3,
      guidance: 0,
      sampler: 'euler_a',
      width: 512,
      height: 512,
    });
    expect(
      imagine('a cat', { env: { DEFAULT_WIDTH: '640', DEFAULT_HEIGHT: '384' }, model: SDXL }),
    ).toMatchObject({ width: 640, height: 384, steps: 30 });
  });

  it('a workspace setting beats the environment; a channel setting beats the workspace', () => {
    const env = { DEFAULT_STEPS: '3', DEFAULT_GUIDANCE: '6' };
    expect(imagine('a cat', { env, workspace: { steps: 7 }, model: TURBO })).toMatchObject({
      steps: 7,
      guidance: 6,
    });
    expect(
      imagine('a cat', {
        env,
        workspace: { steps: 7, sampler: 'ddim' },
        channel: { steps: 2 },
        model: TURBO,
      }),
    ).toMatchObject({ steps: 2, guidance: 6, sampler: 'ddim' });
  });

  it('the user’s flags beat everything', () => {
    expect(
      imagine('a cat --steps 5 --cfg 1.5 --sampler euler --size 448x320', {
        env: { DEFAULT_STEPS: '3' },
        workspace: { steps: 7, guidance: 4 },
        channel: { steps: 2, sampler: 'ddim' },
        model: TURBO,
      }),
    ).toEqual({ steps: 5, guidance: 1.5, sampler: 'euler', width: 448, height: 320 });
  });

  it('a team’s aspect uses the model’s area (SDXL: about 1024², not 512²)', () => {
    const { width, height } = imagine('a cat', { channel: { aspect: '3:2' }, model: SDXL });
    expect(width / height).toBeCloseTo(1.5, 1);
    expect(width * height).toBeGreaterThan(900_000);
  });

  it('a model’s own size is allowed past MAX_PIXELS on that model only', () => {
    expect(imagine('a cat', { model: SDXL })).toMatchObject({ width: 1024, height: 1024 });
    expect(imagine('a cat --size 1024x1024', { model: SDXL })).toMatchObject({ width: 1024 });
    expect(() => imagine('a cat --size 1024x1024', { model: TURBO })).toThrow(/the limit is 589824/u);
  });

  it('MAX_PIXELS unset: the limit on a model is the larger of the built-in one and its own size', () => {
    const limits = requestLimitsFrom(loadConfig({}));
    expect(limits).toMatchObject({ maxPixels: 768 * 768, maxPixelsBuiltIn: true });
    const onSdxl = limitsWith(limits, global(limits), { team: {}, model: SDXL });
    expect(onSdxl).toMatchObject({ maxPixels: 1024 * 1024, defaultWidth: 1024, defaultHeight: 1024 });
    expect(onSdxl.modelSizeReduced).toBeUndefined();
    expect(maxPixelsFor(limits, TURBO)).toBe(768 * 768);
    expect(maxPixelsFor(limits, SDXL)).toBe(1024 * 1024);
    // Upscale ×2 asks with its scale: an image of the model's own size (or the deployment's default
    // size when the model's is unknown) can be doubled.
    expect(maxPixelsFor(limits, SDXL, 2)).toBe(2048 * 2048);
    expect(maxPixelsFor(limits, {}, 2)).toBe(1024 * 1024);
    expect(maxPixelsFor(limits, {})).toBe(768 * 768);
  });

  it('MAX_PIXELS set: it is the limit on every model, and a larger own size is scaled down to fit', () => {
    const env = { MAX_PIXELS: String(640 * 640) };
    const limits = requestLimitsFrom(loadConfig(env));
    expect(limits).toMatchObject({ maxPixels: 640 * 640, maxPixelsBuiltIn: false });
    expect(maxPixelsFor(limits, SDXL)).toBe(640 * 640);
    expect(maxPixelsFor(limits, SDXL, 2)).toBe(640 * 640);
    const onSdxl = limitsWith(limits, global(limits), { team: {}, model: SDXL });
    expect(onSdxl).toMatchObject({ maxPixels: 640 * 640, defaultWidth: 640, defaultHeight: 640 });
    expect(onSdxl.modelSizeReduced).toEqual({ width: 1024, height: 1024 });
    expect(imagine('a cat', { env, model: SDXL })).toMatchObject({ width: 640, height: 640 });
    expect(() => imagine('a cat --size 1024x1024', { env, model: SDXL })).toThrow(/the limit is 409600/u);
    // A wide own size keeps its aspect, in multiples of 8.
    const wide = limitsWith(limits, global(limits), { team: {}, model: { width: 1344, height: 768 } });
    expect(wide.defaultWidth * wide.defaultHeight).toBeLessThanOrEqual(640 * 640);
    expect(wide.defaultWidth / wide.defaultHeight).toBeCloseTo(1344 / 768, 1);
    expect([wide.defaultWidth % 8, wide.defaultHeight % 8]).toEqual([0, 0]);
    // An own size that fits is left alone, and nothing is reported.
    const onTurbo = limitsWith(limits, global(limits), { team: {}, model: TURBO });
    expect(onTurbo).toMatchObject({ defaultWidth: 512, defaultHeight: 512 });
    expect(onTurbo.modelSizeReduced).toBeUndefined();
    // A team's or the environment's size applies instead: the model's reduced one isn't used, nor reported.
    const withEnvSize = requestLimitsFrom(
      loadConfig({ ...env, DEFAULT_WIDTH: '512', DEFAULT_HEIGHT: '512' }),
    );
    const envSized = limitsWith(withEnvSize, global(withEnvSize), { team: {}, model: SDXL });
    expect(envSized).toMatchObject({ defaultWidth: 512, defaultHeight: 512 });
    expect(envSized.modelSizeReduced).toBeUndefined();
  });

  it('the model’s steps are capped by MAX_STEPS', () => {
    expect(imagine('a cat', { env: { MAX_STEPS: '20' }, model: SDXL }).steps).toBe(20);
  });
});

describe('the environment’s DEFAULT_* count only when set', () => {
  it('unset: none are explicit, and the deployment’s defaults are the built-in ones', () => {
    const limits = requestLimitsFrom(loadConfig({}));
    expect(limits.envDefaults).toEqual({});
    expect(limits).toMatchObject({ defaultSteps: 25, defaultGuidance: 7.5, defaultSampler: 'pndm' });
  });

  it('set: exactly those are explicit; an empty value means unset', () => {
    const limits = requestLimitsFrom(
      loadConfig({ DEFAULT_STEPS: '4', DEFAULT_SAMPLER: 'euler', DEFAULT_GUIDANCE: '' }),
    );
    expect(limits.envDefaults).toEqual({ steps: 4, sampler: 'euler' });
    expect(limits.defaultSteps).toBe(4);
  });

  it('one side of the size set: the other is the built-in one', () => {
    expect(requestLimitsFrom(loadConfig({ DEFAULT_WIDTH: '768' })).envDefaults).toEqual({
      width: 768,
      height: 512,
    });
  });
});

describe('teamDefaultsLayer: only what a channel or its workspace set', () => {
  it('channel over workspace, and nothing for fields neither set', () => {
    expect(teamDefaultsLayer({ steps: 9, guidance: 3 }, { steps: 2 })).toEqual({ steps: 2, guidance: 3 });
    expect(teamDefaultsLayer()).toEqual({});
  });
});

describe('fitToPixels: a size scaled down to a pixel limit', () => {
  it('keeps a size that fits; else the aspect, multiples of 8, at least 64 a side, within the limit', () => {
    expect(fitToPixels(512, 512, 768 * 768)).toEqual({ width: 512, height: 512 });
    expect(fitToPixels(1024, 1024, 128 * 128)).toEqual({ width: 128, height: 128 });
    expect(fitToPixels(1024, 1024, 16384)).toEqual({ width: 128, height: 128 });
    expect(fitToPixels(1024, 1024, 16383)).toEqual({ width: 120, height: 120 });
    expect(fitToPixels(4096, 64, 64 * 64)).toEqual({ width: 64, height: 64 });
    for (const [w, h, max] of [
      [1344, 768, 640 * 640],
      [768, 1344, 300_000],
      [1024, 1024, 64 * 64],
      [2048, 64, 100 * 100],
    ] as const) {
      const fitted = fitToPixels(w, h, max);
      expect(fitted.width * fitted.height).toBeLessThanOrEqual(max);
      expect([fitted.width % 8, fitted.height % 8]).toEqual([0, 0]);
      expect(Math.min(fitted.width, fitted.height)).toBeGreaterThanOrEqual(64);
    }
  });
});

describe('modelDefaultsSchema (announcements from another process)', () => {
  it('accepts a worker’s announcement and refuses a malformed one', () => {
    expect(modelDefaultsSchema.safeParse(TURBO).success).toBe(true);
    expect(modelDefaultsSchema.safeParse({ ...TURBO, sampler: undefined }).success).toBe(true);
    for (const bad of [
      { ...TURBO, steps: 0 },
      { ...TURBO, width: 500 },
      { ...TURBO, sampler: 'heun' },
      { ...TURBO, extra: 1 },
      { steps: 1 },
    ])
      expect(modelDefaultsSchema.safeParse(bad).success).toBe(false);
  });
});
