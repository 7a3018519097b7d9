import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GenerateResult } from '../../models/engine.ts';
import { readOnnxIo } from '../../models/onnx-builder/index.ts';
import { loadEngine } from '../../models/pipeline.ts';
import { retypeInput } from './retype-input.ts';
import { loadCases, requestOf, TINY_SDXL, TINY_SDXL_CASES } from './tiny-sd.ts';

/**
 * Text encoders whose `input_ids` are int32 or float32 (Olive exports) instead of int64: the engine feeds
 * the type the model declares. Copies of the tiny-sdxl fixture (int64 ids, two text encoders) with both
 * encoders' input retyped (and cast back inside the graph, so they compute the same) must give exactly
 * the fixture's images; a type no token id fits is refused by name.
 */

const ENCODERS = ['text_encoder', 'text_encoder_2'] as const;

describe('input_ids of another element type than int64 (tiny-sdxl copies)', () => {
  let base: string;
  let reference: GenerateResult;
  // A guided case with a negative prompt: both encoders run for both halves of the batch.
  const request = requestOf(
    loadCases(TINY_SDXL_CASES).find((c) => c.negative !== undefined && c.guidance > 1)!,
  );

  async function variant(type: 'int32' | 'float32' | 'float16'): Promise<string> {
    const dir = join(base, type);
    await cp(TINY_SDXL, dir, { recursive: true });
    for (const encoder of ENCODERS) await retypeInput(join(dir, encoder, 'model.onnx'), 'input_ids', type);
    return dir;
  }

  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), 'imagine-token-ids-'));
    for (const encoder of ENCODERS) {
      const io = await readOnnxIo(join(TINY_SDXL, encoder, 'model.onnx'));
      expect(io.inputs.find((i) => i.name === 'input_ids')?.elemType).toBe('int64');
    }
    const engine = await loadEngine(TINY_SDXL);
    try {
      reference = await engine.generate(request);
    } finally {
      await engine.close();
    }
  });
  afterAll(async () => {
    await rm(base, { recursive: true, force: true });
  });

  for (const type of ['int32', 'float32'] as const) {
    it(`${type} input_ids: the same images as the int64 fixture, byte for byte`, async () => {
      const dir = await variant(type);
      for (const encoder of ENCODERS) {
        const io = await readOnnxIo(join(dir, encoder, 'model.onnx'));
        expect(io.inputs.map((i) => [i.name, i.elemType])).toEqual([['input_ids', type]]);
      }
      const engine = await loadEngine(dir);
      try {
        const result = await engine.generate(request);
        expect(result.images).toHaveLength(reference.images.length);
        for (const [k, image] of result.images.entries()) {
          expect(Buffer.from(image.data).equals(Buffer.from(reference.images[k]!.data)), `image ${k}`).toBe(
            true,
          );
        }
      } finally {
        await engine.close();
      }
    });
  }

  it('float16 input_ids (ids above 2048 would not survive it): refused, naming the type and those supported', async () => {
    const dir = await variant('float16');
    await expect(loadEngine(dir)).rejects.toThrow(
      /input_ids is float16; supported types: int64, int32, float32/u,
    );
  });
});
