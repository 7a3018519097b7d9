import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAMILY_PRESETS } from '../../models/bench/presets.ts';
import { type BuildDemoOptions, buildDemoModel, describeDemoModel } from '../../models/demo/index.ts';
import { loadEngine } from '../../models/pipeline.ts';

/**
 * `bench:engine --preset sd-turbo|sdxl|sdxl-turbo`: the builder makes each family's full-size shape
 * (checked by parameter count against the published models, without writing gigabytes), and the same
 * options at small widths make folders the engine loads as that family.
 */

describe('family benchmark presets', () => {
  for (const name of ['sd-turbo', 'sdxl', 'sdxl-turbo']) {
    it(`${name}: UNet and VAE decoder parameter counts match the published model`, () => {
      const preset = FAMILY_PRESETS[name]!;
      const built = describeDemoModel(preset.build).parameters as unknown as Record<string, number>;
      const published = preset.published!;
      // The learned UNet branch carries the real layout; the procedural denoiser adds ~25 k parameters.
      expect(Math.abs(built.unet! / published.unet! - 1)).toBeLessThan(1e-4);
      expect(built.vaeDecoder).toBe(published.vaeDecoder);
      // diffusers' AutoencoderTiny decoder (madebyollin/taesd): 1,222,531 parameters.
      expect(built.vaeDecoderTiny).toBe(1_222_531);
      // Text encoders: everything but the 49408-row token table (factored to stay small).
      for (const [part, width] of [
        ['textEncoder', preset.build.hiddenSize!],
        ['textEncoder2', preset.build.textEncoder2?.hiddenSize ?? 0],
      ] as const) {
        if (published[part] === undefined) continue;
        const table = 49408 * width;
        expect(Math.abs((built[part]! + table) / published[part]! - 1), part).toBeLessThan(0.01);
      }
    });
  }

  it('has the published request settings (SD-Turbo and SDXL-Turbo: 512², 1 step, no guidance; SDXL 1024²)', () => {
    expect(FAMILY_PRESETS['sd-turbo']).toMatchObject({
      size: 512,
      steps: 1,
      guidance: 0,
      scheduler: 'euler_a',
    });
    expect(FAMILY_PRESETS['sdxl-turbo']).toMatchObject({ size: 512, steps: 1, guidance: 0 });
    expect(FAMILY_PRESETS.sdxl).toMatchObject({ size: 1024, steps: 30 });
  });
});

describe('small builds of the family shapes load as their family', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'bench-families-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const small = (name: string, extra: BuildDemoOptions): BuildDemoOptions => ({
    ...FAMILY_PRESETS[name]!.build,
    hiddenSize: 32,
    textLayers: 2,
    textHeads: 2,
    channels: 32,
    groups: 8,
    headDim: 16,
    vaeChannels: 8,
    externalData: false,
    ...extra,
  });

  for (const [name, family, extra] of [
    ['sd-turbo', 'sd2', {}],
    [
      'sdxl-turbo',
      'sdxl',
      { textEncoder2: { hiddenSize: 64, layers: 3, heads: 2 }, transformerDepth: [0, 2, 3] },
    ],
  ] as const) {
    it(`${name} shape → a ${family} folder with a tiny decoder that generates a 1-step grid`, async () => {
      const dir = path.join(root, name);
      await buildDemoModel(dir, small(name, extra));
      const engine = await loadEngine(dir, { decoder: 'taesd' });
      try {
        expect(engine.info.family).toBe(family);
        const result = await engine.generate({
          prompts: ['a', 'b'],
          negative: '',
          seeds: [1, 2],
          scheduler: 'euler_a',
          steps: 1,
          guidance: 0,
          width: 128,
          height: 128,
        });
        expect(result.images.map((i) => [i.width, i.height])).toEqual([
          [128, 128],
          [128, 128],
        ]);
      } finally {
        await engine.close();
      }
    });
  }
});
