import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initImageSize } from '../../models/init-image.ts';
import { loadEngine, type OnnxEngine } from '../../models/pipeline.ts';
import {
  closeness,
  IMG2IMG,
  IMG2IMG_CASES,
  type Img2ImgCase,
  referenceRgb,
  TINY_SD,
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
