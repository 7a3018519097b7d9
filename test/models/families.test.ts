import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GenerateResult } from '../../models/engine.ts';
import { loadEngine, type OnnxEngine } from '../../models/pipeline.ts';
import {
  closeness,
  loadCases,
  type OracleCase,
  referenceRgb,
  requestOf,
  TINY_SD2,
  TINY_SD2_CASES,
  TINY_SDXL,
  TINY_SDXL_CASES,
} from './tiny-sd.ts';

/**
 * The SD 2.x and SDXL families through the engine API against diffusers' images, at the SD 1.x bar:
 * >= 99.9% of channel values within 1 level, none more than 2 apart.
 */

function label(index: number, c: OracleCase): string {
  const negative = c.negative === undefined ? '' : `, negative ${JSON.stringify(c.negative)}`;
  return (
    `case ${String(index).padStart(2, '0')}: ${c.scheduler} ${c.steps} steps, guidance ${c.guidance}, ` +
    `${c.width}x${c.height}, ${c.prompts.length} image(s)${negative}`
  );
}

for (const [name, dir, casesDir] of [
  ['tiny-sd2 (SD 2.x: v-prediction, OpenCLIP padding)', TINY_SD2, TINY_SD2_CASES],
  ['tiny-sdxl (SDXL: two text encoders, text_embeds, time_ids)', TINY_SDXL, TINY_SDXL_CASES],
] as const) {
  describe(`${name} reproduces diffusers`, () => {
    const cases = loadCases(casesDir);
    let engine: OnnxEngine;
    const results = new Map<number, GenerateResult>();
    beforeAll(async () => {
      engine = await loadEngine(dir);
    });

    it('says which family it runs', () => {
      expect(engine.info.family).toBe(dir === TINY_SDXL ? 'sdxl' : 'sd2');
    });
    afterAll(async () => {
      await engine?.close();
    });

    for (const [index, c] of cases.entries()) {
      it(label(index, c), async () => {
        const result = await engine.generate(requestOf(c));
        results.set(index, result);
        expect(result.images).toHaveLength(c.images.length);
        for (const [k, image] of result.images.entries()) {
          expect([image.width, image.height]).toEqual([c.width, c.height]);
          const close = closeness(image.data, await referenceRgb(c.images[k]!.file, casesDir));
          expect(close.within1, `${c.images[k]!.file}: share within 1 level`).toBeGreaterThanOrEqual(0.999);
          expect(close.maxDiff, `${c.images[k]!.file}: largest difference`).toBeLessThanOrEqual(2);
        }
      });
    }
  });
}
