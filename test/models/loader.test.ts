import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CodedError, ErrorCode, UserError } from '../../core/errors.ts';
import { buildDemoModel } from '../../models/demo/build.ts';
import type { BuildDemoOptions } from '../../models/demo/options.ts';
import type { GenerateRequest } from '../../models/engine.ts';
import { loadModel, openSessions, quotePythonNonFinite } from '../../models/loader.ts';
import { GraphBuilder } from '../../models/onnx-builder/graph.ts';
import { writeModel } from '../../models/onnx-builder/onnx.ts';
import { loadEngine } from '../../models/pipeline.ts';
import { createSession, providerProblem, sessionOptionsFor } from '../../models/providers.ts';
import { closeness, TINY_SD } from './tiny-sd.ts';

let work: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'imagine-loader-'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A copy of tiny-sd to break in one way. */
async function tinyCopy(name: string): Promise<string> {
  const dir = path.join(work, name);
  await cp(TINY_SD, dir, { recursive: true });
  return dir;
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

describe('reads what each session declares', () => {
  it('tiny-sd (diffusers ONNX export: float timestep [B], int32 input_ids)', async () => {
    const m = await loadModel(TINY_SD);
    try {
      expect(m.dtype).toBe('float32');
      expect(m.demo).toBe(false);
      expect(m.name).toBe('tiny-sd');
      expect(m.vaeScalingFactor).toBe(0.18215);
      expect(m.vaeScaleFactor).toBe(8);
      expect(m.textEncoder.inputIds).toMatchObject({ name: 'input_ids', type: 'int32' });
      expect(m.textEncoder.output).toBe('last_hidden_state');
      expect(m.unet.sample).toMatchObject({ name: 'sample', type: 'float32' });
      expect(m.unet.timestep).toMatchObject({ name: 'timestep', type: 'float32' });
      expect(m.unet.timestep.shape).toHaveLength(1);
      expect(m.unet.encoderHiddenStates.shape[2]).toBe(32);
      expect(m.unet.output).toBe('out_sample');
      expect(m.unet.timestepCond).toBeNull();
      expect(m.vaeDecoder.latent.name).toBe('latent_sample');
      expect(m.safetyChecker).toBeNull();
      expect(m.schedulerConfig._class_name).toBe('PNDMScheduler');
    } finally {
      await m.close();
    }
  });

  it('close() releases every session (and may be called twice)', async () => {
    const m = await loadModel(TINY_SD);
    await m.close();
    await m.close();
    await expect(m.textEncoder.session.run({})).rejects.toThrow();
  });
});

describe('export variants load and make the same images as the fp32 base', () => {
  const variants: Record<string, BuildDemoOptions> = {
    'int64 timestep [B] (2022 diffusers exports)': { timestep: 'int64' },
    'scalar float timestep (optimum >= 1.24)': { timestep: 'scalar' },
    'int64 input_ids (optimum)': { inputIds: 'int64' },
    'external data model.onnx_data (optimum)': { externalData: true },
    'optimum layout: all three together': { timestep: 'scalar', inputIds: 'int64', externalData: true },
    fp16: { fp16: true },
  };
  // PNDM's timesteps are whole numbers, so an int64 timestep input sees exactly what a float one does.
  const request: GenerateRequest = {
    prompts: ['a lighthouse at dusk', 'a bowl of ramen'],
    negative: 'blurry',
    seeds: [11, 4_000_000_000],
    scheduler: 'pndm',
    steps: 8,
    guidance: 7.5,
    width: 96,
    height: 64,
  };
  const generateWith = async (dir: string): Promise<Uint8Array[]> => {
    const engine = await loadEngine(dir);
    try {
      return (await engine.generate(request)).images.map((i) => i.data);
    } finally {
      await engine.close();
    }
  };
  let base: Uint8Array[];
  beforeAll(async () => {
    const dir = path.join(work, 'demo-base');
    await buildDemoModel(dir);
    base = await generateWith(dir);
  });

  for (const [label, options] of Object.entries(variants)) {
    it(label, async () => {
      const dir = path.join(work, `demo-${Object.keys(variants).indexOf(label)}`);
      await buildDemoModel(dir, options);
      const m = await loadModel(dir);
      try {
        expect(m.demo).toBe(true);
        expect(m.dtype).toBe(options.fp16 === true ? 'float16' : 'float32');
        expect(m.textEncoder.inputIds.type).toBe(options.inputIds ?? 'int32');
        if (options.timestep === 'int64') expect(m.unet.timestep.type).toBe('int64');
        if (options.timestep === 'scalar') expect(m.unet.timestep.shape).toEqual([]);
        if (options.fp16 === true) expect(m.unet.encoderHiddenStates.type).toBe('float16');
      } finally {
        await m.close();
      }
      for (const [k, data] of (await generateWith(dir)).entries()) {
        const close = closeness(data, base[k]!);
        if (options.fp16 === true) {
          // float16 weights and activations: the mean stays under a level, nothing strays far.
          let sum = 0;
          for (let i = 0; i < data.length; i++) sum += Math.abs(data[i]! - base[k]![i]!);
          expect(sum / data.length).toBeLessThan(1);
          expect(close.maxDiff).toBeLessThanOrEqual(8);
        } else {
          expect(close.within1).toBeGreaterThanOrEqual(0.999);
          expect(close.maxDiff).toBeLessThanOrEqual(2);
        }
      }
    });
  }
});

describe('a missing or corrupt file is one clear error naming it', () => {
  it('no such folder', async () => {
    const e = await loadError(path.join(work, 'nope'));
    expect(e.code).toBe(ErrorCode.ModelMissingFile);
    expect(e.message).toContain(path.join(work, 'nope'));
  });

  it('missing files are listed together', async () => {
    const dir = await tinyCopy('missing');
    await rm(path.join(dir, 'unet/model.onnx'));
    await rm(path.join(dir, 'tokenizer/merges.txt'));
    const e = await loadError(dir);
    expect(e.code).toBe(ErrorCode.ModelMissingFile);
    expect(e.message).toContain(path.join(dir, 'unet/model.onnx'));
    expect(e.message).toContain(path.join(dir, 'tokenizer/merges.txt'));
  });

  it('a corrupt ONNX file', async () => {
    const dir = await tinyCopy('corrupt-onnx');
    await writeFile(path.join(dir, 'vae_decoder/model.onnx'), 'this is not a protobuf');
    const e = await loadError(dir);
    expect(e.code).toBe(ErrorCode.ModelLoad);
    expect(e.message).toContain(path.join(dir, 'vae_decoder/model.onnx'));
  });

  it('a corrupt scheduler config', async () => {
    const dir = await tinyCopy('corrupt-json');
    await writeFile(path.join(dir, 'scheduler/scheduler_config.json'), '{"beta_start": 0.00085,');
    const e = await loadError(dir);
    expect(e.code).toBe(ErrorCode.ModelLoad);
    expect(e.message).toContain(path.join(dir, 'scheduler/scheduler_config.json'));
  });

  it('a bad VAE scaling factor', async () => {
    const dir = await tinyCopy('bad-vae-config');
    await writeFile(path.join(dir, 'vae_decoder/config.json'), '{"scaling_factor": "big"}');
    const e = await loadError(dir);
    expect(e.code).toBe(ErrorCode.ModelLoad);
    expect(e.message).toContain('scaling_factor');
  });

  it('missing external weights', async () => {
    const dir = path.join(work, 'missing-external');
    await buildDemoModel(dir, { externalData: true });
    await rm(path.join(dir, 'unet/model.onnx_data'));
    const e = await loadError(dir);
    expect(e.code).toBe(ErrorCode.ModelLoad);
    expect(e.message).toContain(path.join(dir, 'unet/model.onnx'));
    expect(e.message).toContain('model.onnx_data');
  });

  it('no vae_decoder/config.json: SD 1.x defaults', async () => {
    const dir = await tinyCopy('no-vae-config');
    await rm(path.join(dir, 'vae_decoder/config.json'));
    const m = await loadModel(dir);
    try {
      expect(m.vaeScalingFactor).toBe(0.18215);
      expect(m.vaeScaleFactor).toBe(8);
    } finally {
      await m.close();
    }
  });
});

/** A UNet-shaped graph (out_sample = sample) with the given inputs, to test what the loader refuses. */
async function writeFakeUnet(file: string, channels: number, extraInput: boolean): Promise<void> {
  const g = new GraphBuilder('unet');
  const sample = g.input('sample', 'float32', ['batch', channels, 'h', 'w']);
  g.input('timestep', 'float32', ['batch']);
  g.input('encoder_hidden_states', 'float32', ['batch', 77, 32]);
  if (extraInput) g.input('controlnet_cond', 'float32', ['batch', 3, 'H', 'W']);
  g.output(sample, 'out_sample', 'float32', ['batch', channels, 'h', 'w']);
  await writeModel(file, { graph: g.build() });
}

describe('the sessions of a model open together', () => {
  const parts = (dir: string) => [
    { file: path.join(dir, 'text_encoder/model.onnx'), what: 'text encoder' },
    { file: path.join(dir, 'unet/model.onnx'), what: 'UNet' },
    { file: path.join(dir, 'vae_decoder/model.onnx'), what: 'VAE decoder' },
  ];

  it('every session is asked for before the first one is ready', async () => {
    const events: string[] = [];
    // The real createSession, recording when each call starts and when its session is ready.
    const open: typeof createSession = async (file, options, what) => {
      events.push(`start ${what}`);
      const session = await createSession(file, options, what);
      events.push(`ready ${what}`);
      return session;
    };
    const sessions = await openSessions(parts(TINY_SD), {}, open);
    try {
      expect(sessions.map((s) => s.inputNames[0])).toEqual(['input_ids', 'sample', 'latent_sample']);
      expect(events.slice(0, 3)).toEqual(['start text encoder', 'start UNet', 'start VAE decoder']);
    } finally {
      await Promise.all(sessions.map((s) => s.release()));
    }
  });

  it('one corrupt file: its error names it, and the sessions that opened are released', async () => {
    const dir = await tinyCopy('corrupt-unet');
    await writeFile(path.join(dir, 'unet/model.onnx'), 'this is not a protobuf');
    const released: string[] = [];
    const open: typeof createSession = async (file, options, what) => {
      const session = await createSession(file, options, what);
      const release = session.release.bind(session);
      session.release = async () => {
        released.push(what ?? file);
        await release();
      };
      return session;
    };
    const error = await openSessions(parts(dir), {}, open).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CodedError);
    expect((error as CodedError).code).toBe(ErrorCode.ModelLoad);
    expect((error as CodedError).message).toContain(path.join(dir, 'unet/model.onnx'));
    expect(released.sort()).toEqual(['VAE decoder', 'text encoder']);
  });
});

describe('refuses models this pipeline cannot run', () => {
  it('an inpainting UNet (9 input channels)', async () => {
    const dir = await tinyCopy('inpaint');
    await writeFakeUnet(path.join(dir, 'unet/model.onnx'), 9, false);
    const e = await loadError(dir);
    expect(e.code).toBe(ErrorCode.ModelLoad);
    expect(e.message).toMatch(/9 channels/);
  });

  it('a UNet with inputs it cannot feed', async () => {
    const dir = await tinyCopy('controlnet');
    await writeFakeUnet(path.join(dir, 'unet/model.onnx'), 4, true);
    const e = await loadError(dir);
    expect(e.code).toBe(ErrorCode.ModelLoad);
    expect(e.message).toContain('controlnet_cond');
  });
});

/** sample * 0.1 + mean(encoder_hidden_states) + timestep / 1e4: every row of every input matters. */
async function writeToyUnet(file: string, batch: number | 'batch', timestepCond = false): Promise<void> {
  const g = new GraphBuilder('unet');
  const sample = g.input('sample', 'float32', [batch, 4, 8, 8]);
  const t = g.input('timestep', 'float32', [batch]);
  const ehs = g.input('encoder_hidden_states', 'float32', [batch, 77, 32]);
  let m = g.reshape(g.reduceMean(ehs, [1, 2]), [-1, 1, 1, 1]);
  if (timestepCond) {
    // An LCM-distilled UNet's guidance embedding (time_cond_proj_dim = 256).
    const cond = g.input('timestep_cond', 'float32', [batch, 256]);
    m = g.add(m, g.reshape(g.reduceMean(cond, [1]), [-1, 1, 1, 1]));
  }
  const tt = g.reshape(g.mul(t, g.scalar(1e-4)), [-1, 1, 1, 1]);
  g.output(g.add(g.add(g.mul(sample, g.scalar(0.1)), m), tt), 'out_sample', 'float32', [batch, 4, 8, 8]);
  await writeModel(file, { graph: g.build() });
}

describe('static-shape exports', () => {
  it('a fixed-batch UNet runs in chunks and gives what a dynamic one gives', async () => {
    const dynamic = await tinyCopy('toy-dynamic');
    await writeToyUnet(path.join(dynamic, 'unet/model.onnx'), 'batch');
    const fixed = await tinyCopy('toy-fixed');
    await writeToyUnet(path.join(fixed, 'unet/model.onnx'), 1);
    const request: GenerateRequest = {
      prompts: ['one', 'two', 'three'],
      negative: 'four',
      seeds: [1, 2, 3],
      scheduler: 'euler_a',
      steps: 4,
      guidance: 6,
      width: 64,
      height: 64,
    };
    const run = async (dir: string) => {
      const engine = await loadEngine(dir);
      try {
        return await engine.generate(request);
      } finally {
        await engine.close();
      }
    };
    const a = await run(dynamic);
    const b = await run(fixed);
    for (let k = 0; k < 3; k++)
      expect(Buffer.from(b.images[k]!.data).equals(Buffer.from(a.images[k]!.data))).toBe(true);
    // And the dynamic model sees each image's own prompt: images differ.
    expect(Buffer.from(a.images[0]!.data).equals(Buffer.from(a.images[1]!.data))).toBe(false);
  });

  it('a UNet exported for one size refuses others with a user error', async () => {
    const engine = await loadEngine(path.join(work, 'toy-fixed'));
    try {
      await expect(
        engine.generate({
          prompts: ['x'],
          negative: '',
          seeds: [1],
          scheduler: 'pndm',
          steps: 2,
          guidance: 7,
          width: 96,
          height: 64,
        }),
      ).rejects.toMatchObject({ code: ErrorCode.InvalidRequest, message: expect.stringContaining('64x64') });
    } finally {
      await engine.close();
    }
  });
});

describe('LCM-distilled UNets (timestep_cond input)', () => {
  it('feed the guidance embedding and run without classifier-free guidance', async () => {
    const dir = await tinyCopy('toy-lcm');
    await writeToyUnet(path.join(dir, 'unet/model.onnx'), 'batch', true);
    const m = await loadModel(dir);
    expect(m.unet.timestepCond).toMatchObject({ name: 'timestep_cond', shape: ['batch', 256] });
    await m.close();
    const engine = await loadEngine(dir);
    try {
      const request: GenerateRequest = {
        prompts: ['a tiny robot'],
        negative: 'this negative prompt is unused without guidance',
        seeds: [9],
        scheduler: 'lcm',
        steps: 4,
        guidance: 8,
        width: 64,
        height: 64,
      };
      const a = await engine.generate(request);
      const b = await engine.generate({ ...request, negative: 'another one' });
      const c = await engine.generate({ ...request, guidance: 2 });
      // No unconditional branch: the negative prompt changes nothing; the guidance embedding does.
      expect(Buffer.from(a.images[0]!.data).equals(Buffer.from(b.images[0]!.data))).toBe(true);
      expect(Buffer.from(a.images[0]!.data).equals(Buffer.from(c.images[0]!.data))).toBe(false);
      expect(a.negativeTruncatedTokens).toBe(0);
    } finally {
      await engine.close();
    }
  });
});

describe('execution providers', () => {
  it('CPU sessions: one thread per core, sequential, full optimisation', () => {
    const o = sessionOptionsFor();
    expect(o.intraOpNumThreads).toBe(availableParallelism());
    expect(o.executionMode).toBe('sequential');
    expect(o.graphOptimizationLevel).toBe('all');
    expect(o.executionProviders).toEqual(['cpu']);
    expect(sessionOptionsFor({ intraOpThreads: 3 }).intraOpNumThreads).toBe(3);
  });

  it('cuda and webgpu map to their providers, with CPU for unsupported nodes', () => {
    expect(sessionOptionsFor({ executionProvider: 'cuda', deviceId: 1 }).executionProviders).toEqual([
      { name: 'cuda', deviceId: 1 },
      'cpu',
    ]);
    expect(sessionOptionsFor({ executionProvider: 'webgpu' }).executionProviders).toEqual([
      { name: 'webgpu' },
      'cpu',
    ]);
  });

  it('cuda either loads or fails with E_PROVIDER_UNAVAILABLE and how to install it', async () => {
    const file = path.join(TINY_SD, 'vae_decoder/model.onnx');
    try {
      const s = await createSession(file, { executionProvider: 'cuda' });
      await s.release();
    } catch (error) {
      expect(error).toMatchObject({ code: ErrorCode.ProviderUnavailable });
      if (providerProblem('cuda') !== null) {
        expect((error as Error).message).toContain('npm run install:cuda');
      }
    }
  });

  it('webgpu either loads or fails with E_PROVIDER_UNAVAILABLE naming the drivers it needs', async () => {
    const file = path.join(TINY_SD, 'vae_decoder/model.onnx');
    try {
      const s = await createSession(file, { executionProvider: 'webgpu' });
      await s.release();
    } catch (error) {
      expect(error).toMatchObject({ code: ErrorCode.ProviderUnavailable });
      expect((error as Error).message).toMatch(/Vulkan/);
    }
  });

  it('webgpu cannot pick a GPU by id', async () => {
    await expect(
      createSession(path.join(TINY_SD, 'vae_decoder/model.onnx'), {
        executionProvider: 'webgpu',
        deviceId: 1,
      }),
    ).rejects.toMatchObject({ code: ErrorCode.Config });
  });

  it('loadEngine fails at load time, not at the first request, when the provider is unusable', async () => {
    try {
      const engine = await loadEngine(TINY_SD, { executionProvider: 'cuda' });
      expect(engine.info.executionProvider).toBe('cuda');
      await engine.close();
    } catch (error) {
      expect(error).toMatchObject({ code: ErrorCode.ProviderUnavailable });
    }
  });
});

describe('config JSON as Python writes it', () => {
  it('quotes bare NaN / Infinity / -Infinity outside strings only', () => {
    const text = '{"lambda_min_clipped": -Infinity, "x": Infinity, "y": NaN, "s": "-Infinity NaN", "z": 1}';
    expect(JSON.parse(quotePythonNonFinite(text))).toEqual({
      lambda_min_clipped: '-Infinity',
      x: 'Infinity',
      y: 'NaN',
      s: '-Infinity NaN',
      z: 1,
    });
    expect(JSON.parse(quotePythonNonFinite('{"a": "say \\"Infinity\\""}'))).toEqual({ a: 'say "Infinity"' });
  });
});

describe('UNets exported with fixed ×2 upsampling (as torch.onnx exports SD UNets)', () => {
  it('make 64-multiple sizes, and refuse others with a user error that says what works', async () => {
    const dir = path.join(work, 'demo-scale2');
    await buildDemoModel(dir, { upsample: 'scale2' });
    const engine = await loadEngine(dir, { intraOpThreads: 1 });
    try {
      const request: GenerateRequest = {
        prompts: ['a fox'],
        negative: '',
        seeds: [1],
        scheduler: 'euler',
        steps: 2,
        guidance: 7.5,
        width: 128,
        height: 64,
      };
      expect((await engine.generate(request)).images[0]?.width).toBe(128);
      // 72 px → latent 9 → 5 → 3 after two halvings; ×2 gives 6, not 5: the UNet's Concat fails.
      const error = await engine.generate({ ...request, width: 72 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UserError);
      expect((error as UserError).message).toBe(
        "This model can't make 72x64: its UNet needs a width and height that are multiples of 64 (for example 64x64).",
      );
    } finally {
      await engine.close();
    }
  });
});
