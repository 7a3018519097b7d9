import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CodedError, ErrorCode } from '../../core/errors.ts';
import type { GenerateRequest } from '../../models/engine.ts';
import { loadModel } from '../../models/loader.ts';
import { GraphBuilder } from '../../models/onnx-builder/graph.ts';
import { writeModel } from '../../models/onnx-builder/onnx.ts';
import { loadEngine } from '../../models/pipeline.ts';
import { closeness, TINY_SD, TINY_SD2, TINY_SDXL } from './tiny-sd.ts';

/** Telling the family of a folder, refusing what the engine cannot run, and SDXL's export variants. */

let work: string;
beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'imagine-families-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function copyOf(source: string, name: string): Promise<string> {
  const dir = path.join(work, name);
  await cp(source, dir, { recursive: true });
  return dir;
}

async function editIndex(dir: string, edit: (index: Record<string, unknown>) => void): Promise<void> {
  const file = path.join(dir, 'model_index.json');
  const index = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  edit(index);
  await writeFile(file, JSON.stringify(index));
}

async function loadError(dir: string): Promise<CodedError> {
  try {
    const m = await loadModel(dir);
    await m.close();
  } catch (error) {
    expect(error).toBeInstanceOf(CodedError);
    return error as CodedError;
  }
  throw new Error(`loading ${dir} succeeded`);
}

describe('the family of a folder', () => {
  it('SD 1.x, SD 2.x (OpenCLIP padding) and SDXL fixtures', async () => {
    for (const [dir, family] of [
      [TINY_SD, 'sd1'],
      [TINY_SD2, 'sd2'],
      [TINY_SDXL, 'sdxl'],
    ] as const) {
      const m = await loadModel(dir);
      try {
        expect(m.family).toBe(family);
        expect(m.second === null).toBe(family !== 'sdxl');
        expect(m.tokenizer.padTokenId).toBe(family === 'sd2' ? 0 : m.tokenizer.eosTokenId);
      } finally {
        await m.close();
      }
    }
  });

  it('SDXL without model_index.json: told by text_encoder_2/, second tokenizer padding with !', async () => {
    const dir = await copyOf(TINY_SDXL, 'sdxl-no-index');
    await rm(path.join(dir, 'model_index.json'));
    const m = await loadModel(dir);
    try {
      expect(m.family).toBe('sdxl');
      expect(m.second!.tokenizer.padTokenId).toBe(0);
      expect(m.tokenizer.padTokenId).toBe(m.tokenizer.eosTokenId);
      expect(m.vaeScalingFactor).toBe(0.13025);
      // diffusers' default for SDXL pipelines when model_index.json does not say.
      expect(m.forceZerosForEmptyPrompt).toBe(true);
    } finally {
      await m.close();
    }
  });
});

describe('refuses, saying what it found and what it runs', () => {
  it('a pipeline class it does not run', async () => {
    const dir = await copyOf(TINY_SD, 'sd3');
    await editIndex(dir, (i) => {
      i._class_name = 'StableDiffusion3Pipeline';
    });
    const e = await loadError(dir);
    expect(e.code).toBe(ErrorCode.ModelLoad);
    expect(e.message).toContain('StableDiffusion3Pipeline');
    expect(e.message).toContain('StableDiffusionXLPipeline (SDXL, SDXL-Turbo)');
  });

  it('an SDXL folder without its second text encoder', async () => {
    const dir = await copyOf(TINY_SDXL, 'sdxl-no-te2');
    await rm(path.join(dir, 'text_encoder_2'), { recursive: true });
    const e = await loadError(dir);
    expect(e.code).toBe(ErrorCode.ModelMissingFile);
    expect(e.message).toContain(path.join(dir, 'text_encoder_2/model.onnx'));
  });

  it('the SDXL refiner (no first text encoder)', async () => {
    const dir = await copyOf(TINY_SDXL, 'sdxl-refiner');
    await editIndex(dir, (i) => {
      i._class_name = 'StableDiffusionXLImg2ImgPipeline';
      i.text_encoder = [null, null];
    });
    const e = await loadError(dir);
    expect(e.code).toBe(ErrorCode.ModelLoad);
    expect(e.message).toMatch(/SDXL refiner, not supported/);
  });

  it('an SDXL UNet in a folder that says StableDiffusionPipeline', async () => {
    const dir = await copyOf(TINY_SDXL, 'sd-with-sdxl-unet');
    await editIndex(dir, (i) => {
      i._class_name = 'OnnxStableDiffusionPipeline';
    });
    const e = await loadError(dir);
    expect(e.code).toBe(ErrorCode.ModelLoad);
    expect(e.message).toContain('takes text_embeds and time_ids (an SDXL UNet)');
  });

  it('an SD 1.x UNet in an SDXL folder', async () => {
    const dir = await copyOf(TINY_SDXL, 'sdxl-with-sd-unet');
    await cp(path.join(TINY_SD, 'unet/model.onnx'), path.join(dir, 'unet/model.onnx'));
    const e = await loadError(dir);
    expect(e.code).toBe(ErrorCode.ModelLoad);
    expect(e.message).toContain('takes no text_embeds input');
  });

  it('an SDXL text encoder exported without hidden states', async () => {
    const dir = await copyOf(TINY_SDXL, 'sdxl-no-hidden');
    await cp(path.join(TINY_SD, 'text_encoder/model.onnx'), path.join(dir, 'text_encoder/model.onnx'));
    const e = await loadError(dir);
    expect(e.code).toBe(ErrorCode.ModelLoad);
    expect(e.message).toContain(path.join(dir, 'text_encoder/model.onnx'));
    expect(e.message).toContain('hidden_states.0..N');
  });
});

/**
 * A toy SDXL UNet: sample * 0.1 + mean(encoder_hidden_states) + mean(text_embeds) + mean(time_ids) / 1000
 * + timestep / 1e4, so every conditioning input changes the picture. Scalar timestep (optimum >= 1.24).
 */
async function writeToySdxlUnet(file: string, type: 'float32' | 'float16'): Promise<void> {
  const g = new GraphBuilder('unet', type);
  const sample = g.input('sample', type, ['batch', 4, 'h', 'w']);
  const t = g.input('timestep', type, []);
  const ehs = g.input('encoder_hidden_states', type, ['batch', 77, 64]);
  const pooled = g.input('text_embeds', type, ['batch', 32]);
  const ids = g.input('time_ids', type, ['batch', 6]);
  const rows = (x: string, axes: number[]) => g.reshape(g.reduceMean(x, axes), [-1, 1, 1, 1]);
  let out = g.add(g.mul(sample, g.scalar(0.1)), rows(ehs, [1, 2]));
  out = g.add(out, rows(pooled, [1]));
  out = g.add(out, g.mul(rows(ids, [1]), g.scalar(1e-3)));
  out = g.add(out, g.mul(t, g.scalar(1e-4)));
  g.output(out, 'out_sample', type, ['batch', 4, 'h', 'w']);
  await writeModel(file, { graph: g.build() });
}

describe('SDXL export variants', () => {
  const request: GenerateRequest = {
    prompts: ['a lighthouse at dusk', 'a bowl of ramen'],
    negative: '',
    seeds: [5, 6],
    scheduler: 'euler',
    steps: 4,
    guidance: 5,
    width: 64,
    height: 64,
  };
  const generate = async (dir: string, r: GenerateRequest): Promise<Uint8Array[]> => {
    const engine = await loadEngine(dir);
    try {
      return (await engine.generate(r)).images.map((i) => i.data);
    } finally {
      await engine.close();
    }
  };

  it('a float16 UNet with a scalar timestep gives what its float32 twin gives', async () => {
    const fp32 = await copyOf(TINY_SDXL, 'toy-fp32');
    await writeToySdxlUnet(path.join(fp32, 'unet/model.onnx'), 'float32');
    const fp16 = await copyOf(TINY_SDXL, 'toy-fp16');
    await writeToySdxlUnet(path.join(fp16, 'unet/model.onnx'), 'float16');
    const m = await loadModel(fp16);
    try {
      expect(m.dtype).toBe('float16');
      expect(m.unet.timestep.shape).toEqual([]);
      expect(m.unet.textEmbeds!.type).toBe('float16');
      expect(m.unet.timeIds!.type).toBe('float16');
    } finally {
      await m.close();
    }
    const a = await generate(fp32, request);
    const b = await generate(fp16, request);
    for (let k = 0; k < a.length; k++) {
      let sum = 0;
      for (let i = 0; i < a[k]!.length; i++) sum += Math.abs(a[k]![i]! - b[k]![i]!);
      expect(sum / a[k]!.length).toBeLessThan(1);
      expect(closeness(b[k]!, a[k]!).maxDiff).toBeLessThanOrEqual(8);
    }
  });

  it('no negative prompt (zeros) and an explicit empty one (encoded) make different pictures', async () => {
    const dir = path.join(work, 'toy-fp32');
    const none = await generate(dir, request);
    const empty = await generate(dir, { ...request, negativeGiven: true });
    const again = await generate(dir, { ...request, negativeGiven: false });
    for (let k = 0; k < none.length; k++) {
      expect(Buffer.from(none[k]!).equals(Buffer.from(empty[k]!))).toBe(false);
      expect(Buffer.from(none[k]!).equals(Buffer.from(again[k]!))).toBe(true);
    }
  });

  it('refuses a negativeGiven that is not a boolean', async () => {
    const engine = await loadEngine(TINY_SDXL);
    try {
      const bad = { ...request, negativeGiven: 'yes' } as unknown as GenerateRequest;
      await expect(engine.generate(bad)).rejects.toMatchObject({ code: ErrorCode.InvalidRequest });
    } finally {
      await engine.close();
    }
  });
});
