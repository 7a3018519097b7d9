import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SAMPLERS } from '../../core/samplers.ts';
import { initImageSize, MAX_INIT_IMAGE_BYTES, MAX_INIT_IMAGE_PIXELS } from '../../models/init-image.ts';
import { GraphBuilder, writeModel } from '../../models/onnx-builder/index.ts';
import { loadEngine, type OnnxEngine } from '../../models/pipeline.ts';
import {
  closeness,
  IMG2IMG,
  IMG2IMG_CASES,
  type Img2ImgCase,
  referenceRgb,
  TINY_SD,
  TINY_SD2,
  TINY_SDXL,
} from './tiny-sd.ts';

/**
 * Image-to-image through the engine API against diffusers' StableDiffusionImg2ImgPipeline and
 * StableDiffusionXLImg2ImgPipeline (requires_aesthetics_score=False), at the text-to-image bar:
 * >= 99.9% of channel values within 1 level, none more than 2 apart. The size comes from the picture.
 */

function label(index: number, c: Img2ImgCase): string {
  const negative = c.negative === undefined ? '' : `, negative ${JSON.stringify(c.negative)}`;
  return (
    `${c.model} case ${String(index).padStart(2, '0')}: ${c.scheduler} ${c.steps} steps, strength ` +
    `${c.strength}, guidance ${c.guidance}, ${c.init_image}, ${c.prompts.length} image(s)${negative}`
  );
}

const engines = new Map<string, OnnxEngine>();
beforeAll(async () => {
  engines.set('tiny-sd', await loadEngine(TINY_SD));
  engines.set('tiny-sdxl', await loadEngine(TINY_SDXL));
});
afterAll(async () => {
  for (const engine of engines.values()) await engine.close();
});

describe('image-to-image reproduces diffusers through the engine API', () => {
  for (const [index, c] of IMG2IMG.entries()) {
    it(label(index, c), async () => {
      const initImage = new Uint8Array(await readFile(path.join(IMG2IMG_CASES, c.init_image)));
      const { width, height } = await initImageSize(initImage, 8);
      const result = await engines.get(c.model)!.generate({
        prompts: c.prompts,
        negative: c.negative ?? '',
        negativeGiven: c.negative !== undefined,
        seeds: c.seeds,
        scheduler: c.scheduler,
        steps: c.steps,
        guidance: c.guidance,
        width,
        height,
        initImage,
        strength: c.strength,
      });
      expect(result.images).toHaveLength(c.images.length);
      // diffusers runs int(steps * strength) steps (PNDM's schedule repeats one timestep: one more call).
      const run = Math.min(Math.trunc(c.steps * c.strength), c.steps) + (c.scheduler === 'pndm' ? 1 : 0);
      expect(result.timings.stepMs).toHaveLength(run);
      expect(result.timings.encodeImageMs).toBeGreaterThan(0);
      for (const [k, image] of result.images.entries()) {
        const close = closeness(image.data, await referenceRgb(c.images[k]!.file, IMG2IMG_CASES));
        expect(close.within1, `${c.images[k]!.file}: share within 1 level`).toBeGreaterThanOrEqual(0.999);
        expect(close.maxDiff, `${c.images[k]!.file}: largest difference`).toBeLessThanOrEqual(2);
      }
    });
  }
});

const base = {
  prompts: ['a red house'],
  negative: '',
  seeds: [1],
  scheduler: 'euler' as const,
  steps: 4,
  guidance: 1,
  width: 64,
  height: 64,
};

describe('image-to-image refuses, with a coded reason, what it cannot use', () => {
  const initA = () => readFile(path.join(IMG2IMG_CASES, 'init-a.png')).then((b) => new Uint8Array(b));
  const refused = (promise: Promise<unknown>, code: string, message: string | RegExp) =>
    expect(promise).rejects.toMatchObject({
      name: `UserError[${code}]`,
      message:
        typeof message === 'string' ? expect.stringContaining(message) : expect.stringMatching(message),
    });

  it('bytes that are not a picture', async () => {
    await refused(
      engines.get('tiny-sd')!.generate({ ...base, initImage: new TextEncoder().encode('not a picture') }),
      'E_INVALID_REQUEST',
      /could not be read as a picture: send a PNG, JPEG or WebP file/,
    );
  });

  it('a picture of an unsupported type (TIFF), naming the accepted ones', async () => {
    const tiff = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#808080' } })
      .tiff()
      .toBuffer();
    await refused(
      engines.get('tiny-sd')!.generate({ ...base, initImage: new Uint8Array(tiff) }),
      'E_UNSUPPORTED_MEDIA_TYPE',
      'The starting image is TIFF; only PNG, JPEG and WebP are accepted.',
    );
  });

  it('more bytes than the limit, stating it', async () => {
    const big = new Uint8Array(MAX_INIT_IMAGE_BYTES + 1);
    await refused(
      engines.get('tiny-sd')!.generate({ ...base, initImage: big }),
      'E_INVALID_REQUEST',
      `at most ${MAX_INIT_IMAGE_BYTES} bytes (20 MiB) are accepted`,
    );
  });

  it('more pixels than the limit, stating it, before decoding them', async () => {
    const wide = await sharp({ create: { width: 8200, height: 2100, channels: 3, background: '#000' } })
      .png({ compressionLevel: 9 })
      .toBuffer();
    await refused(
      engines.get('tiny-sd')!.generate({ ...base, initImage: new Uint8Array(wide) }),
      'E_INVALID_REQUEST',
      `The starting image is 8200x2100; at most ${MAX_INIT_IMAGE_PIXELS} pixels (4096x4096) are accepted.`,
    );
  });

  it('a strength outside (0, 1], or a strength without a picture', async () => {
    const sd = engines.get('tiny-sd')!;
    const initImage = await initA();
    await refused(
      sd.generate({ ...base, initImage, strength: 0 }),
      'E_INVALID_REQUEST',
      /above 0 and at most 1, got 0/,
    );
    await refused(sd.generate({ ...base, initImage, strength: 1.2 }), 'E_INVALID_REQUEST', /got 1.2/);
    await refused(sd.generate({ ...base, strength: 0.5 }), 'E_INVALID_REQUEST', /only with a starting image/);
  });

  it('a strength that leaves no denoising step', async () => {
    await refused(
      engines.get('tiny-sd')!.generate({ ...base, initImage: await initA(), strength: 0.2 }),
      'E_INVALID_REQUEST',
      /Strength 0.2 with 4 steps runs no denoising step/,
    );
  });

  it('a model folder without vae_encoder/', async () => {
    const sd2 = await loadEngine(TINY_SD2);
    try {
      await refused(
        sd2.generate({ ...base, initImage: await initA(), strength: 0.5 }),
        'E_INVALID_REQUEST',
        /has no VAE encoder \(vae_encoder\/model.onnx\)/,
      );
      // Text-to-image on the same engine is unaffected.
      expect((await sd2.generate(base)).images).toHaveLength(1);
    } finally {
      await sd2.close();
    }
  });

  it('resizes a picture of another size to the requested one (sharp Lanczos-3)', async () => {
    const result = await engines.get('tiny-sd')!.generate({
      ...base,
      initImage: new Uint8Array(await readFile(path.join(IMG2IMG_CASES, 'init-d.png'))),
      strength: 0.5,
    });
    expect([result.images[0]!.width, result.images[0]!.height]).toEqual([64, 64]);
  });
});

describe('an encoder that samples inside its graph (latent_sample)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'img2img-latent-sample-'));
    await cp(TINY_SD, dir, { recursive: true });
    await rm(path.join(dir, 'vae_encoder'), { recursive: true });
    // A stand-in for an older export: pooled pixels mixed into 4 channels, named latent_sample.
    const b = new GraphBuilder('vae_encoder');
    const x = b.input('sample', 'float32', ['batch', 3, 'height', 'width']);
    const pooled = b.op('AveragePool', [x], { kernel_shape: { ints: [8, 8] }, strides: { ints: [8, 8] } });
    const mixed = b.op('Conv', [
      pooled,
      b.constFloat(
        Array.from({ length: 12 }, (_, i) => (i % 5) - 2),
        [4, 3, 1, 1],
      ),
    ]);
    b.output(mixed, 'latent_sample', 'float32', ['batch', 4, 'h', 'w']);
    await writeModel(path.join(dir, 'vae_encoder/model.onnx'), { graph: b.build() });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is accepted, with a logged warning that its seeds cannot match diffusers', async () => {
    const warnings: string[] = [];
    const logger = { info: () => {}, warn: (_: object, msg: string) => warnings.push(msg) };
    const engine = await loadEngine(dir, { logger });
    try {
      const initImage = new Uint8Array(await readFile(path.join(IMG2IMG_CASES, 'init-a.png')));
      const request = { ...base, seeds: [1, 2], prompts: ['a', 'a'], initImage, strength: 0.5 };
      const result = await engine.generate(request);
      expect(result.images).toHaveLength(2);
      // The two seeds still get their own start noise.
      expect(Buffer.compare(result.images[0]!.data, result.images[1]!.data)).not.toBe(0);
      expect(warnings.join('\n')).toMatch(
        /samples inside its graph \(latent_sample\).*can't match diffusers/,
      );
    } finally {
      await engine.close();
    }
  });
});

describe('every sampler starts mid-schedule', () => {
  for (const scheduler of SAMPLERS) {
    it(`${scheduler}: int(steps × strength) steps from the strength's timestep, progress counting those`, async () => {
      const initImage = new Uint8Array(await readFile(path.join(IMG2IMG_CASES, 'init-a.png')));
      const totals: number[] = [];
      const result = await engines
        .get('tiny-sd')!
        .generate(
          { ...base, scheduler, steps: 6, initImage, strength: 0.5 },
          { onStep: (p) => void totals.push(p.total) },
        );
      // PNDM's schedule repeats one timestep, so it makes one UNet call more (as diffusers does).
      const calls = scheduler === 'pndm' ? 4 : 3;
      expect(result.timings.stepMs).toHaveLength(calls);
      expect(totals).toEqual(Array(calls).fill(calls));
      expect(result.images[0]!.data.some((v) => v !== result.images[0]!.data[0])).toBe(true);
    });
  }
});
