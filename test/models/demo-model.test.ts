import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  alphasCumprod,
  type BuildDemoOptions,
  buildDemoModel,
  describeDemoModel,
  ensureDemoModel,
  SCALING_FACTOR,
} from '../../models/demo/index.ts';
import { Prng } from '../../models/demo/prng.ts';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../../models/fp16.ts';

const BOS = 49406;
const EOS = 49407;
/** Token ids as CLIPTokenizer pads them: BOS, tokens, EOS, then EOS up to 77. */
function ids(tokens: readonly number[]): number[] {
  const out = [BOS, ...tokens, EOS];
  while (out.length < 77) out.push(EOS);
  return out;
}
// "a photo of a cat" / "red fox in snow" as CLIP ids (any distinct token lists would do).
const PROMPT_A = [320, 1125, 539, 320, 2368];
const PROMPT_B = [736, 3240, 530, 2583];

function gaussian(seed: number, n: number): Float32Array {
  const p = new Prng(seed, 'test-noise');
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u1 = (p.nextUint32() + 1) / 4294967297;
    const u2 = p.uniform();
    out[i] = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }
  return out;
}

async function sha256(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(relative(dir, join(e.parentPath, e.name)));
  }
  return out.sort();
}

interface Sessions {
  text: ort.InferenceSession;
  unet: ort.InferenceSession;
  vae: ort.InferenceSession;
}

const opened: ort.InferenceSession[] = [];
async function openModel(dir: string, threads = 2): Promise<Sessions> {
  const open = async (c: string): Promise<ort.InferenceSession> => {
    const s = await ort.InferenceSession.create(join(dir, c, 'model.onnx'), {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
    });
    opened.push(s);
    return s;
  };
  return { text: await open('text_encoder'), unet: await open('unet'), vae: await open('vae_decoder') };
}

type Half = 'float32' | 'float16';
const toTensor = (type: Half, data: Float32Array, dims: readonly number[]): ort.Tensor =>
  type === 'float32'
    ? new ort.Tensor('float32', data, dims)
    : new ort.Tensor('float16', float32ToFloat16Bits(data), dims);
const toF32 = (t: ort.Tensor): Float32Array =>
  t.type === 'float16' ? float16BitsToFloat32(t.data as Uint16Array) : (t.data as Float32Array);

interface GridResult {
  images: Float32Array; // [B,3,H,W] in [-1,1]
  ms: { text: number; unet: number; vae: number; total: number };
}

/**
 * A minimal text-to-image loop over plain ort sessions: DDIM (eta 0) with SD 1.5's leading timesteps,
 * classifier-free guidance (UNet batch 2B), latents / scaling_factor into the VAE.
 */
async function grid(
  s: Sessions,
  prompts: readonly (readonly number[])[],
  seeds: readonly number[],
  o: { width?: number; height?: number; steps?: number; guidance?: number; dtype?: Half } = {},
): Promise<GridResult> {
  const B = prompts.length;
  const W = o.width ?? 512;
  const H = o.height ?? 512;
  const steps = o.steps ?? 20;
  const g = o.guidance ?? 7.5;
  const dtype = o.dtype ?? 'float32';
  const h = H / 8;
  const w = W / 8;
  const N = 4 * h * w;
  const t0 = performance.now();
  const idArr = new Int32Array(2 * B * 77);
  prompts.forEach((p, k) => {
    idArr.set(ids([]), k * 77);
    idArr.set(ids(p), (B + k) * 77);
  });
  const enc = (await s.text.run({ input_ids: new ort.Tensor('int32', idArr, [2 * B, 77]) }))
    .last_hidden_state!;
  const t1 = performance.now();
  const ab = alphasCumprod();
  const ts = Array.from({ length: steps }, (_, i) => (steps - 1 - i) * Math.floor(1000 / steps) + 1);
  const x = new Float32Array(B * N);
  seeds.forEach((seed, k) => {
    x.set(gaussian(seed, N), k * N);
  });
  for (let i = 0; i < steps; i++) {
    const t = ts[i]!;
    const a = ab[t]!;
    const ap = i + 1 < steps ? ab[ts[i + 1]!]! : ab[0]!;
    const input = new Float32Array(2 * B * N);
    input.set(x, 0);
    input.set(x, B * N);
    const out = await s.unet.run({
      sample: toTensor(dtype, input, [2 * B, 4, h, w]),
      timestep: toTensor(dtype, new Float32Array(2 * B).fill(t), [2 * B]),
      encoder_hidden_states: enc,
    });
    const e = toF32(out.out_sample!);
    for (let j = 0; j < B * N; j++) {
      const eps = e[j]! + g * (e[B * N + j]! - e[j]!);
      const x0 = (x[j]! - Math.sqrt(1 - a) * eps) / Math.sqrt(a);
      x[j] = Math.sqrt(ap) * x0 + Math.sqrt(1 - ap) * eps;
    }
  }
  const t2 = performance.now();
  const latents = x.map((v) => v / SCALING_FACTOR);
  const img = (await s.vae.run({ latent_sample: toTensor(dtype, latents, [B, 4, h, w]) })).sample!;
  const t3 = performance.now();
  expect(img.dims).toEqual([B, 3, H, W]);
  return { images: toF32(img), ms: { text: t1 - t0, unet: t2 - t1, vae: t3 - t2, total: t3 - t0 } };
}

function image(r: GridResult, k: number, H = 512, W = 512): Float32Array {
  return r.images.subarray(k * 3 * H * W, (k + 1) * 3 * H * W);
}
/** Mean |difference| between horizontally and vertically adjacent pixels, per channel value. */
function neighbourDiff(img: Float32Array, H: number, W: number): number {
  let sum = 0;
  let n = 0;
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < H - 1; y++) {
      for (let x = 0; x < W - 1; x++) {
        const p = c * H * W + y * W + x;
        sum += Math.abs(img[p + 1]! - img[p]!) + Math.abs(img[p + W]! - img[p]!);
        n += 2;
      }
    }
  }
  return sum / n;
}
function meanColour(img: Float32Array, H = 512, W = 512): number[] {
  return [0, 1, 2].map((c) => img.subarray(c * H * W, (c + 1) * H * W).reduce((a, v) => a + v, 0) / (H * W));
}
const meanAbsDiff = (a: Float32Array, b: Float32Array): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
};

let base = '';
let demoDir = '';
let demo: Sessions;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'demo-model-'));
  demoDir = await ensureDemoModel(join(base, 'demo'));
  demo = await openModel(demoDir);
});

afterAll(async () => {
  for (const s of opened) await s.release();
  await rm(base, { recursive: true, force: true });
});

describe('demo model folder', () => {
  it('has the SD 1.x ONNX layout, a demo marker, and the real CLIP tokenizer files', async () => {
    expect(await listFiles(demoDir)).toEqual([
      'demo.json',
      'model_index.json',
      'scheduler/scheduler_config.json',
      'text_encoder/model.onnx',
      'tokenizer/merges.txt',
      'tokenizer/special_tokens_map.json',
      'tokenizer/tokenizer_config.json',
      'tokenizer/vocab.json',
      'unet/model.onnx',
      'vae_decoder/config.json',
      'vae_decoder/model.onnx',
      'vae_encoder/model.onnx',
    ]);
    const marker = JSON.parse(await readFile(join(demoDir, 'demo.json'), 'utf8'));
    expect(marker.demo).toBe(true);
    expect(marker.label).toMatch(/demo/i);
    const index = JSON.parse(await readFile(join(demoDir, 'model_index.json'), 'utf8'));
    expect(index._class_name).toBe('OnnxStableDiffusionPipeline');
    const sched = JSON.parse(await readFile(join(demoDir, 'scheduler/scheduler_config.json'), 'utf8'));
    expect(sched).toMatchObject({
      beta_schedule: 'scaled_linear',
      beta_start: 0.00085,
      beta_end: 0.012,
      steps_offset: 1,
    });
    const vae = JSON.parse(await readFile(join(demoDir, 'vae_decoder/config.json'), 'utf8'));
    expect(vae.scaling_factor).toBe(0.18215);
    expect(vae.block_out_channels).toHaveLength(4);

    const expected = (
      await readFile(join(import.meta.dirname, '../fixtures/demo/clip-tokenizer.sha256'), 'utf8')
    )
      .trim()
      .split('\n')
      .map((l) => l.split(/\s+/));
    expect(expected).toHaveLength(4);
    for (const [hash, name] of expected) expect(await sha256(join(demoDir, 'tokenizer', name!))).toBe(hash);
  });

  it('declares SD 1.x inputs and outputs with symbolic batch and size', () => {
    const meta = (s: ort.InferenceSession): unknown[] =>
      [...s.inputMetadata, ...s.outputMetadata].map((v) => (v.isTensor ? [v.name, v.type, v.shape] : v.name));
    expect(meta(demo.text)).toEqual([
      ['input_ids', 'int32', ['batch', 77]],
      ['last_hidden_state', 'float32', ['batch', 77, 32]],
      ['pooler_output', 'float32', ['batch', 32]],
    ]);
    expect(meta(demo.unet)).toEqual([
      ['sample', 'float32', ['batch', 4, 'height', 'width']],
      ['timestep', 'float32', ['batch']],
      ['encoder_hidden_states', 'float32', ['batch', 'sequence', 32]],
      ['out_sample', 'float32', ['batch', 4, 'height', 'width']],
    ]);
    expect(meta(demo.vae)).toEqual([
      ['latent_sample', 'float32', ['batch', 4, 'height', 'width']],
      ['sample', 'float32', ['batch', 3, 'image_height', 'image_width']],
    ]);
  });

  it('runs at batch 1 and 4, at 512×512 and 640×384, and a batch row does not depend on the others', async () => {
    for (const [H, W] of [
      [512, 512],
      [384, 640],
    ] as const) {
      const h = H / 8;
      const w = W / 8;
      const N = 4 * h * w;
      const idArr = new Int32Array(4 * 77);
      [PROMPT_A, PROMPT_B, [], PROMPT_A].forEach((p, k) => {
        idArr.set(ids(p), k * 77);
      });
      const enc4 = (await demo.text.run({ input_ids: new ort.Tensor('int32', idArr, [4, 77]) }))
        .last_hidden_state!;
      expect(enc4.dims).toEqual([4, 77, 32]);
      const enc1 = (
        await demo.text.run({ input_ids: new ort.Tensor('int32', idArr.slice(77, 154), [1, 77]) })
      ).last_hidden_state!;
      const e4 = enc4.data as Float32Array;
      expect(Array.from(enc1.data as Float32Array)).toEqual(Array.from(e4.subarray(77 * 32, 2 * 77 * 32)));

      const sample = gaussian(7, 4 * N);
      const out4 = await demo.unet.run({
        sample: new ort.Tensor('float32', sample, [4, 4, h, w]),
        timestep: new ort.Tensor('float32', Float32Array.from([981, 500, 21.5, 1]), [4]),
        encoder_hidden_states: enc4,
      });
      expect(out4.out_sample!.dims).toEqual([4, 4, h, w]);
      const o4 = out4.out_sample!.data as Float32Array;
      expect(o4.every(Number.isFinite)).toBe(true);
      const out1 = await demo.unet.run({
        sample: new ort.Tensor('float32', sample.slice(N, 2 * N), [1, 4, h, w]),
        timestep: new ort.Tensor('float32', Float32Array.from([500]), [1]),
        encoder_hidden_states: new ort.Tensor('float32', e4.slice(77 * 32, 2 * 77 * 32), [1, 77, 32]),
      });
      const o1 = out1.out_sample!.data as Float32Array;
      expect(meanAbsDiff(o1, o4.subarray(N, 2 * N))).toBeLessThan(1e-5);

      for (const B of [1, 4]) {
        const img = await demo.vae.run({
          latent_sample: new ort.Tensor('float32', sample.slice(0, B * N), [B, 4, h, w]),
        });
        expect(img.sample!.dims).toEqual([B, 3, H, W]);
        expect((img.sample!.data as Float32Array).every((v) => v >= -1 && v <= 1)).toBe(true);
      }
    }
  });
});

describe('demo model images', () => {
  let result: GridResult;
  let cpuMs = 0;
  // Two prompts × two seeds: (A,0) (A,1) (B,0) (B,1).
  beforeAll(async () => {
    // Single-threaded sessions, so the process CPU time is the compute cost whatever else loads the machine.
    const single = await openModel(demoDir, 1);
    await grid(single, [PROMPT_A], [0], { steps: 2 }); // warm-up
    const before = process.cpuUsage();
    result = await grid(single, [PROMPT_A, PROMPT_A, PROMPT_B, PROMPT_B], [0, 1, 0, 1]);
    const used = process.cpuUsage(before);
    cpuMs = (used.user + used.system) / 1000;
  });

  it('renders a 4-image 512×512 grid (20 steps, CFG, UNet batch 8) in well under 1 s of CPU', () => {
    console.log(
      `demo grid (1 thread): text ${result.ms.text.toFixed(0)} ms, 20 UNet steps ${result.ms.unet.toFixed(0)} ms, ` +
        `VAE ${result.ms.vae.toFixed(0)} ms, wall ${result.ms.total.toFixed(0)} ms, CPU ${cpuMs.toFixed(0)} ms`,
    );
    expect(cpuMs).toBeLessThan(1000);
  });

  it('is smooth: neighbour differences far below white noise', () => {
    // Uniform noise on [-1, 1] has a mean |neighbour difference| of 2/3.
    for (let k = 0; k < 4; k++) expect(neighbourDiff(image(result, k), 512, 512)).toBeLessThan(0.02);
  });

  it('changes with the seed and with the prompt', () => {
    const [a0, a1, b0] = [0, 1, 2].map((k) => image(result, k));
    expect(meanAbsDiff(a0!, a1!)).toBeGreaterThan(0.1);
    expect(meanAbsDiff(a0!, b0!)).toBeGreaterThan(0.1);
    const colourDistance = (p: number[], q: number[]): number => Math.hypot(...p.map((v, i) => v - q[i]!));
    // The prompt tints the palette: same-prompt images share a mean colour more than same-seed ones.
    const samePrompt = colourDistance(meanColour(a0!), meanColour(a1!));
    const sameSeed = colourDistance(meanColour(a0!), meanColour(b0!));
    expect(sameSeed).toBeGreaterThan(0.15);
    expect(sameSeed).toBeGreaterThan(2 * samePrompt);
  });

  it('text embeddings differ between prompts (and their token means too)', async () => {
    const idArr = Int32Array.from([...ids(PROMPT_A), ...ids(PROMPT_B)]);
    const e = (await demo.text.run({ input_ids: new ort.Tensor('int32', idArr, [2, 77]) })).last_hidden_state!
      .data as Float32Array;
    const mean = (k: number): number[] =>
      Array.from({ length: 32 }, (_, c) => {
        let s = 0;
        for (let t = 0; t < 77; t++) s += e[(k * 77 + t) * 32 + c]!;
        return s / 77;
      });
    expect(meanAbsDiff(e.subarray(0, 77 * 32), e.subarray(77 * 32))).toBeGreaterThan(0.1);
    const [m0, m1] = [mean(0), mean(1)];
    expect(Math.max(...m0.map((v, i) => Math.abs(v - m1[i]!)))).toBeGreaterThan(0.05);
  });
});

describe('demo model builds', () => {
  it('are deterministic: the same options give the same bytes; another seed other weights', async () => {
    const again = join(base, 'again');
    await buildDemoModel(again);
    const files = await listFiles(demoDir);
    expect(await listFiles(again)).toEqual(files);
    for (const f of files) expect(await sha256(join(again, f)), f).toBe(await sha256(join(demoDir, f)));
    const other = join(base, 'seed7');
    await buildDemoModel(other, { seed: 7 });
    expect(await sha256(join(other, 'unet/model.onnx'))).not.toBe(
      await sha256(join(demoDir, 'unet/model.onnx')),
    );
  });

  it('fp16 variant: float16 weights and I/O, images close to the float32 model', async () => {
    const dir = await ensureDemoModel(join(base, 'fp16'), { fp16: true });
    const s = await openModel(dir);
    const types = [s.text, s.unet, s.vae].map((m) =>
      [...m.inputMetadata, ...m.outputMetadata].map((v) => (v.isTensor ? v.type : '?')),
    );
    expect(types).toEqual([
      ['int32', 'float16', 'float16'],
      ['float16', 'float16', 'float16', 'float16'],
      ['float16', 'float16'],
    ]);
    const marker = JSON.parse(await readFile(join(dir, 'demo.json'), 'utf8'));
    expect(marker.dtype).toBe('float16');
    const half = await grid(s, [PROMPT_A, PROMPT_B], [3, 4], { dtype: 'float16', steps: 10 });
    const full = await grid(demo, [PROMPT_A, PROMPT_B], [3, 4], { steps: 10 });
    expect(half.images.every(Number.isFinite)).toBe(true);
    expect(meanAbsDiff(half.images, full.images)).toBeLessThan(0.02);
  });

  it('loader-test variants: int64 / scalar timestep, int64 input_ids, external data', async () => {
    const variants: [string, BuildDemoOptions][] = [
      ['ts-int64', { timestep: 'int64' }],
      ['ts-scalar', { timestep: 'scalar' }],
      ['ids-int64', { inputIds: 'int64' }],
      ['external', { externalData: true }],
    ];
    const h = 16;
    const sample = gaussian(11, 2 * 4 * h * h);
    const idArr = Int32Array.from([...ids(PROMPT_A), ...ids([])]);
    const ref = (await demo.text.run({ input_ids: new ort.Tensor('int32', idArr, [2, 77]) }))
      .last_hidden_state!;
    const refOut = (
      await demo.unet.run({
        sample: new ort.Tensor('float32', sample, [2, 4, h, h]),
        timestep: new ort.Tensor('float32', Float32Array.from([321, 321]), [2]),
        encoder_hidden_states: ref,
      })
    ).out_sample!.data as Float32Array;

    for (const [name, options] of variants) {
      const dir = await ensureDemoModel(join(base, name), options);
      const s = await openModel(dir);
      const ts = s.unet.inputMetadata.find((m) => m.name === 'timestep')!;
      const idsMeta = s.text.inputMetadata[0]!;
      const timestep =
        options.timestep === 'int64'
          ? new ort.Tensor('int64', BigInt64Array.from([321n, 321n]), [2])
          : options.timestep === 'scalar'
            ? new ort.Tensor('float32', Float32Array.from([321]), [])
            : new ort.Tensor('float32', Float32Array.from([321, 321]), [2]);
      if (options.timestep === 'int64')
        expect(ts.isTensor && [ts.type, ts.shape]).toEqual(['int64', ['batch']]);
      if (options.timestep === 'scalar') expect(ts.isTensor && [ts.type, ts.shape]).toEqual(['float32', []]);
      if (options.inputIds === 'int64') expect(idsMeta.isTensor && idsMeta.type).toBe('int64');
      const input_ids =
        options.inputIds === 'int64'
          ? new ort.Tensor(
              'int64',
              BigInt64Array.from(idArr, (v) => BigInt(v)),
              [2, 77],
            )
          : new ort.Tensor('int32', idArr, [2, 77]);
      const enc = (await s.text.run({ input_ids })).last_hidden_state!;
      expect(Array.from(enc.data as Float32Array), name).toEqual(Array.from(ref.data as Float32Array));
      const out = (
        await s.unet.run({
          sample: new ort.Tensor('float32', sample, [2, 4, h, h]),
          timestep,
          encoder_hidden_states: enc,
        })
      ).out_sample!.data as Float32Array;
      expect(meanAbsDiff(out, refOut), name).toBeLessThan(1e-6);
      if (options.externalData === true) {
        // The demo VAE decoder has no weights over the 1 kB threshold, so it has no data file.
        for (const c of ['text_encoder', 'unet']) {
          expect((await stat(join(dir, c, 'model.onnx_data'))).size).toBeGreaterThan(0);
        }
        expect((await stat(join(dir, 'unet/model.onnx'))).size).toBeLessThan(
          (await stat(join(demoDir, 'unet/model.onnx'))).size / 2,
        );
      }
    }
  });

  it('ensureDemoModel reuses a current folder and rebuilds a stale or incomplete one', async () => {
    const dir = join(base, 'ensure');
    const [a, b] = await Promise.all([ensureDemoModel(dir), ensureDemoModel(dir)]);
    expect(a).toBe(dir);
    expect(b).toBe(dir);
    expect((await readdir(base)).filter((n) => n.startsWith('.ensure'))).toEqual([]);
    const markerPath = join(dir, 'demo.json');
    const first = (await stat(markerPath)).mtimeMs;
    await ensureDemoModel(dir);
    expect((await stat(markerPath)).mtimeMs).toBe(first);

    const marker = JSON.parse(await readFile(markerPath, 'utf8'));
    await writeFile(markerPath, JSON.stringify({ ...marker, version: 0 }));
    await ensureDemoModel(dir);
    expect(JSON.parse(await readFile(markerPath, 'utf8')).version).toBe(marker.version);

    await rm(join(dir, 'unet/model.onnx'));
    await ensureDemoModel(dir);
    expect(await sha256(join(dir, 'unet/model.onnx'))).toBe(await sha256(join(demoDir, 'unet/model.onnx')));

    await ensureDemoModel(dir, { seed: 99 });
    expect(JSON.parse(await readFile(markerPath, 'utf8')).options.seed).toBe(99);

    // A folder that is not a demo model is never replaced.
    const foreign = join(base, 'foreign');
    await mkdir(join(foreign, 'unet'), { recursive: true });
    await writeFile(join(foreign, 'unet', 'model.onnx'), 'someone else’s model');
    await expect(ensureDemoModel(foreign)).rejects.toThrow(/not a demo model folder/);
    expect(await readFile(join(foreign, 'unet', 'model.onnx'), 'utf8')).toBe('someone else’s model');
  });
});

describe('benchmark-size preset', () => {
  it('sd15 matches SD 1.5’s parameter counts (UNet 859.52M, VAE decoder 49.49M)', () => {
    const d = describeDemoModel({ scale: 'sd15' });
    expect(Math.abs(d.parameters.unet / 859_520_964 - 1)).toBeLessThan(0.001);
    expect(Math.abs(d.parameters.vaeDecoder / 49_490_199 - 1)).toBeLessThan(0.001);
    // Conv/linear MACs at 64×64 latents land near the ~340 G reported for the SD 1.x UNet; attention
    // score products (QKᵀ, PV) add ~60 G on top.
    expect(d.macsPerImage512.unet / 1e9).toBeGreaterThan(380);
    expect(d.macsPerImage512.unet / 1e9).toBeLessThan(420);
  });

  it('the sd15 architecture at reduced width builds, loads and runs (all blocks, VAE branch, fp16)', async () => {
    const small: BuildDemoOptions = {
      scale: 'sd15',
      hiddenSize: 64,
      textLayers: 2,
      textHeads: 4,
      channels: 32,
      heads: 4,
      groups: 8,
      vaeChannels: 16,
      externalData: true,
    };
    for (const fp16 of [false, true]) {
      const dir = await ensureDemoModel(join(base, `sd15-small-${fp16}`), { ...small, fp16 });
      const s = await openModel(dir);
      const dtype = fp16 ? 'float16' : 'float32';
      const r = await grid(s, [PROMPT_A], [1], { width: 64, height: 64, steps: 2, dtype });
      expect(r.images.every((v) => Number.isFinite(v) && v >= -1 && v <= 1)).toBe(true);
    }
  });
});
