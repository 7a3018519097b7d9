import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../core/errors.ts';
import { writeTinyDecoder } from '../../models/demo/index.ts';
import type { GenerateRequest, RgbImage } from '../../models/engine.ts';
import { loadEngineInThread } from '../../models/engine-thread/index.ts';
import { vaeOutputToRgb } from '../../models/image.ts';
import { type LoadedModel, loadModel } from '../../models/loader.ts';
import { decodeLatents } from '../../models/pipeline/decode.ts';
import { SessionRunner } from '../../models/pipeline/session.ts';
import { loadEngine } from '../../models/pipeline.ts';
import {
  closeness,
  loadCases,
  referenceRgb,
  requestOf,
  TINY_SD2,
  TINY_SDXL,
  TINY_SDXL_CASES,
} from './tiny-sd.ts';

/**
 * The tiny autoencoder (TAESD, diffusers' AutoencoderTiny) as an optional decoder: a random-weight
 * TAESD-shaped decoder written with the project's builder next to copies of the SD 2.x / SDXL fixtures.
 */

let root: string;
let sdxl: string;
let sd2: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'taesd-'));
  sdxl = path.join(root, 'tiny-sdxl');
  sd2 = path.join(root, 'tiny-sd2');
  await cp(TINY_SDXL, sdxl, { recursive: true });
  await cp(TINY_SD2, sd2, { recursive: true });
  await writeTinyDecoder(sdxl);
  await writeTinyDecoder(sd2, { seed: 99 });
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Deterministic latents in the UNet's range. */
function latents(n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.fround(Math.sin(i * 0.37) * 1.3);
  return out;
}

async function runDirect(file: string, input: Float32Array, dims: number[]): Promise<Float32Array> {
  const session = await InferenceSession.create(file);
  try {
    const out = await session.run({ latent_sample: new Tensor('float32', input, dims) });
    return out.sample!.data as Float32Array;
  } finally {
    await session.release();
  }
}

describe('TAESD tiny decoder', () => {
  it('has the AutoencoderTiny decoder shape: [B,4,h,w] → [B,3,8h,8w]', async () => {
    const session = await InferenceSession.create(path.join(sdxl, 'vae_decoder_tiny/model.onnx'));
    try {
      const out = await session.run({
        latent_sample: new Tensor('float32', latents(2 * 4 * 6 * 10), [2, 4, 6, 10]),
      });
      expect(out.sample!.dims).toEqual([2, 3, 48, 80]);
    } finally {
      await session.release();
    }
  });

  it('DECODER=taesd decodes with vae_decoder_tiny/ on the unscaled latents; the default divides by the VAE scaling_factor', async () => {
    const size = { batch: 1, width: 64, height: 48 };
    const z = latents(4 * 6 * 8);
    const expectTiny = vaeOutputToRgb(
      await runDirect(path.join(sdxl, 'vae_decoder_tiny/model.onnx'), z, [1, 4, 6, 8]),
      0,
      64,
      48,
    );
    const scaled = z.map((v) => Math.fround(v / Math.fround(0.13025)));
    const expectVae = vaeOutputToRgb(
      await runDirect(path.join(sdxl, 'vae_decoder/model.onnx'), scaled, [1, 4, 6, 8]),
      0,
      64,
      48,
    );
    let model: LoadedModel | undefined;
    let vaeModel: LoadedModel | undefined;
    try {
      model = await loadModel(sdxl, { decoder: 'taesd' });
      vaeModel = await loadModel(sdxl);
      expect(model.tinyDecoder).not.toBeNull();
      expect(vaeModel.decoder).toBe('vae');
      const tiny = await decodeLatents(model, new SessionRunner(), z, size, undefined);
      const vae = await decodeLatents(vaeModel, new SessionRunner(), z, size, undefined);
      expect(Buffer.from(tiny.rgb[0]!).equals(Buffer.from(expectTiny))).toBe(true);
      expect(Buffer.from(vae.rgb[0]!).equals(Buffer.from(expectVae))).toBe(true);
      expect(Buffer.from(tiny.rgb[0]!).equals(Buffer.from(vae.rgb[0]!))).toBe(false);
    } finally {
      await model?.close();
      await vaeModel?.close();
    }
  });

  it('the default decoder is unchanged by a tiny decoder in the folder: SDXL still matches diffusers', async () => {
    const c = loadCases(TINY_SDXL_CASES)[0]!;
    const engine = await loadEngine(sdxl);
    const tinyEngine = await loadEngine(sdxl, { decoder: 'taesd' });
    try {
      const result = await engine.generate(requestOf(c));
      for (const [k, image] of result.images.entries()) {
        const close = closeness(image.data, await referenceRgb(c.images[k]!.file, TINY_SDXL_CASES));
        expect(close.within1).toBeGreaterThanOrEqual(0.999);
        expect(close.maxDiff).toBeLessThanOrEqual(2);
      }
      const tiny = await tinyEngine.generate(requestOf(c));
      expect([tiny.images[0]!.width, tiny.images[0]!.height]).toEqual([c.width, c.height]);
      const close = closeness(tiny.images[0]!.data, result.images[0]!.data);
      // Random TAESD weights: nothing like the VAE's picture, so the taesd engine did not use the VAE.
      expect(close.within1).toBeLessThan(0.5);
    } finally {
      await engine.close();
      await tinyEngine.close();
    }
  });

  it('gives progress a full-size TAESD preview when the folder has one, and none otherwise', async () => {
    const request: GenerateRequest = {
      prompts: ['a red barn'],
      negative: '',
      seeds: [7],
      scheduler: 'euler_a',
      steps: 2,
      guidance: 1,
      width: 64,
      height: 64,
    };
    const withTiny = await loadEngine(sd2);
    const without = await loadEngine(TINY_SD2);
    try {
      const previews: RgbImage[] = [];
      await withTiny.generate(request, {
        onStep: async (p) => {
          expect(p.decodedPreview).toBeTypeOf('function');
          previews.push(await p.decodedPreview!(0));
        },
      });
      expect(previews).toHaveLength(2);
      expect([previews[0]!.width, previews[0]!.height, previews[0]!.data.length]).toEqual([
        64,
        64,
        64 * 64 * 3,
      ]);
      let seen = true;
      await without.generate(request, {
        onStep: (p) => {
          seen &&= p.decodedPreview !== undefined;
        },
      });
      expect(seen).toBe(false);
    } finally {
      await withTiny.close();
      await without.close();
    }
  });

  it('in the engine thread, decoded previews come only as often as the caller asks (each is a decode)', async () => {
    const request: GenerateRequest = {
      prompts: ['a red barn'],
      negative: '',
      seeds: [7],
      scheduler: 'euler_a',
      steps: 4,
      guidance: 1,
      width: 64,
      height: 64,
    };
    const engine = await loadEngineInThread(sd2);
    try {
      // Full-size previews are decoded ones; the latent projection is 1/8 of the size.
      const decodedSteps = async (every?: number) => {
        const steps: number[] = [];
        await engine.generate(request, {
          ...(every === undefined ? {} : { decodedPreviewEveryMs: every }),
          onStep: (p) => {
            if (p.preview(0).width === 64) steps.push(p.step);
          },
        });
        return steps;
      };
      expect(await decodedSteps()).toEqual([1, 2, 3]); // every step but the last
      expect(await decodedSteps(0)).toEqual([]);
      expect(await decodedSteps(3_600_000)).toEqual([1]);
    } finally {
      await engine.close();
    }
  });

  it('DECODER=taesd without vae_decoder_tiny/ fails at load with E_MODEL_LOAD naming the file', async () => {
    await expect(loadEngine(TINY_SD2, { decoder: 'taesd' })).rejects.toMatchObject({
      code: ErrorCode.ModelLoad,
      message: expect.stringContaining('vae_decoder_tiny/model.onnx'),
    });
  });
});
