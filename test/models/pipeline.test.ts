import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CodedError, ErrorCode, UserError } from '../../core/errors.ts';
import type { GenerateResult, StepProgress } from '../../models/engine.ts';
import { clipPixelValues, latentPreview, roundHalfEven, vaeOutputToRgb } from '../../models/image.ts';
import { GraphBuilder } from '../../models/onnx-builder/graph.ts';
import { writeModel } from '../../models/onnx-builder/onnx.ts';
import { guidanceScaleEmbedding, loadEngine, type OnnxEngine } from '../../models/pipeline.ts';
import { CASES, closeness, referenceRgb, requestOf, TINY_SD } from './tiny-sd.ts';

/** The bar: >= 99.9% of channel values within 1 level of diffusers' image, none more than 2 apart. */
async function expectOracle(actual: Uint8Array, file: string): Promise<void> {
  const close = closeness(actual, await referenceRgb(file));
  expect(close.within1, `${file}: share within 1 level`).toBeGreaterThanOrEqual(0.999);
  expect(close.maxDiff, `${file}: largest difference`).toBeLessThanOrEqual(2);
}

let engine: OnnxEngine;
const results = new Map<number, GenerateResult>();

beforeAll(async () => {
  engine = await loadEngine(TINY_SD);
});

afterAll(async () => {
  await engine?.close();
});

describe('tiny-sd reproduces diffusers StableDiffusionPipeline', () => {
  for (const [index, c] of CASES.entries()) {
    const label =
      `case ${String(index).padStart(2, '0')}: ${c.scheduler} ${c.steps} steps, guidance ${c.guidance}, ` +
      `${c.width}x${c.height}, ${c.prompts.length} image(s)${c.negative === undefined ? '' : ', negative'}`;
    it(label, async () => {
      const result = await engine.generate(requestOf(c));
      results.set(index, result);
      expect(result.images).toHaveLength(c.images.length);
      for (const [k, image] of result.images.entries()) {
        expect(image.width).toBe(c.width);
        expect(image.height).toBe(c.height);
        expect(image.prompt).toBe(c.prompts[k]);
        expect(image.seed).toBe(c.seeds[k]);
        await expectOracle(image.data, c.images[k]!.file);
      }
    });
  }

  it('case 02 (seed 2 alone) equals image 2 of case 00 bit for bit', async () => {
    const alone = results.get(2) ?? (await engine.generate(requestOf(CASES[2]!)));
    const inBatch = results.get(0) ?? (await engine.generate(requestOf(CASES[0]!)));
    expect(Buffer.from(alone.images[0]!.data).equals(Buffer.from(inBatch.images[2]!.data))).toBe(true);
  });

  it('reports tokens dropped from a prompt over 77 tokens (case 09)', async () => {
    const c = CASES[9]!;
    const result = results.get(9) ?? (await engine.generate(requestOf(c)));
    // Each "castle" is one CLIP token; BOS and EOS take two of the 77 places.
    const words = c.prompts[0]!.split(' ').length;
    expect(result.truncatedTokens).toEqual([words + 2 - 77]);
    expect(result.negativeTruncatedTokens).toBe(0);
  });

  it('makes image k from (prompt k, seed k) alone, whatever the batch order and neighbours', async () => {
    const c = CASES[3]!; // euler_a: per-step noise must come from each image's own generator
    const swapped = await engine.generate({
      ...requestOf(c),
      prompts: ['an unrelated prompt', c.prompts[1]!, c.prompts[0]!],
      seeds: [99, c.seeds[1]!, c.seeds[0]!],
    });
    const original = results.get(3) ?? (await engine.generate(requestOf(c)));
    expect(Buffer.from(swapped.images[2]!.data).equals(Buffer.from(original.images[0]!.data))).toBe(true);
    expect(Buffer.from(swapped.images[1]!.data).equals(Buffer.from(original.images[1]!.data))).toBe(true);
  });

  it('returns timings for every step and the generator used', async () => {
    const c = CASES[6]!;
    const result = await engine.generate(requestOf(c));
    expect(result.generator).toBe('cpu');
    expect(result.timings.stepMs).toHaveLength(c.steps);
    expect(result.timings.totalMs).toBeGreaterThan(0);
    expect(result.timings.decodeMs).toBeGreaterThan(0);
    const profile = engine.lastProfile!;
    expect(profile.unetRunMs).toHaveLength(c.steps);
    for (const [i, ms] of profile.unetRunMs.entries()) expect(ms).toBeLessThanOrEqual(profile.stepMs[i]!);
  });
});

describe('progress, preview and cancellation', () => {
  it('calls onStep after every step with a latent-resolution preview', async () => {
    const c = CASES[0]!;
    const seen: StepProgress[] = [];
    let previewShape: [number, number, number] | null = null;
    await engine.generate(
      { ...requestOf(c), prompts: c.prompts.slice(0, 2), seeds: c.seeds.slice(0, 2) },
      {
        onStep: (p) => {
          seen.push(p);
          if (p.step === p.total) {
            const img = p.preview(1);
            previewShape = [img.width, img.height, img.data.length];
            expect(() => p.preview(2)).toThrow(RangeError);
          }
        },
      },
    );
    // diffusers' PNDM (skip_prk_steps) runs steps + 1 timesteps.
    expect(seen.map((p) => p.step)).toEqual(Array.from({ length: c.steps + 1 }, (_, i) => i + 1));
    expect(new Set(seen.map((p) => p.total))).toEqual(new Set([c.steps + 1]));
    for (let i = 1; i < seen.length; i++)
      expect(seen[i]!.elapsedMs).toBeGreaterThanOrEqual(seen[i - 1]!.elapsedMs);
    expect(previewShape).toEqual([c.width / 8, c.height / 8, (c.width / 8) * (c.height / 8) * 3]);
  });

  it('stops between steps when the signal aborts, rejecting with E_CANCELLED', async () => {
    const controller = new AbortController();
    const steps: number[] = [];
    const run = engine.generate(requestOf(CASES[7]!), {
      signal: controller.signal,
      onStep: (p) => {
        steps.push(p.step);
        if (p.step === 3) controller.abort();
      },
    });
    await expect(run).rejects.toSatisfy((e) => e instanceof UserError && e.code === ErrorCode.Cancelled);
    expect(steps).toEqual([1, 2, 3]);
    // The engine stays usable.
    const again = await engine.generate(requestOf(CASES[8]!));
    expect(again.images).toHaveLength(1);
  });

  it('rejects at once when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    let steps = 0;
    await expect(
      engine.generate(requestOf(CASES[8]!), { signal: controller.signal, onStep: () => void steps++ }),
    ).rejects.toMatchObject({ code: ErrorCode.Cancelled });
    expect(steps).toBe(0);
  });
});

describe('request validation', () => {
  const base = requestOf(CASES[8]!);
  const bad: [string, Partial<typeof base>][] = [
    ['width not a multiple of 8', { width: 60 }],
    ['zero height', { height: 0 }],
    ['no prompts', { prompts: [], seeds: [] }],
    ['seeds and prompts of different lengths', { seeds: [1, 2] }],
    ['negative seed', { seeds: [-1] }],
    ['fractional seed', { seeds: [1.5] }],
    ['zero steps', { steps: 0 }],
    ['NaN guidance', { guidance: Number.NaN }],
    ['unknown sampler', { scheduler: 'heun' as never }],
  ];
  for (const [what, patch] of bad) {
    it(`refuses ${what} with a user error`, async () => {
      await expect(engine.generate({ ...base, ...patch })).rejects.toSatisfy(
        (e) => e instanceof UserError && e.code === ErrorCode.InvalidRequest,
      );
    });
  }
});

describe('helpers', () => {
  it('rounds halves to even like numpy', () => {
    expect([0.5, 1.5, 2.5, 3.5, 254.5, 2.4999, 2.5001].map(roundHalfEven)).toEqual([0, 2, 2, 4, 254, 2, 3]);
  });

  it('maps VAE output [-1, 1] to bytes with clamping', () => {
    // Planar 3 x 1 x 2: R = [-1, 1], G = [0, 2], B = [-3, 0.5]
    const rgb = vaeOutputToRgb(Float32Array.from([-1, 1, 0, 2, -3, 0.5]), 0, 2, 1);
    // (0 * 0.5 + 0.5) * 255 = 127.5 rounds to even 128; 0.75 * 255 = 191.25 → 191.
    expect(Array.from(rgb)).toEqual([0, 128, 0, 255, 255, 191]);
  });

  it('previews zero latents as mid-grey', () => {
    const img = latentPreview(new Float32Array(4 * 2 * 3), 0, 4, 3, 2);
    expect(img.width).toBe(3);
    expect(img.height).toBe(2);
    expect(new Set(img.data)).toEqual(new Set([128]));
  });

  it("preprocesses for CLIP like transformers' CLIPImageProcessor", async () => {
    const grey = 200;
    const image = { width: 96, height: 64, data: new Uint8Array(96 * 64 * 3).fill(grey) };
    const pre = {
      shortestEdge: 224,
      cropHeight: 224,
      cropWidth: 224,
      rescaleFactor: 1 / 255,
      mean: [0.48145466, 0.4578275, 0.40821073] as const,
      std: [0.26862954, 0.26130258, 0.27577711] as const,
    };
    const out = await clipPixelValues(image, pre);
    expect([out.width, out.height]).toEqual([224, 224]);
    expect(out.pixels).toHaveLength(3 * 224 * 224);
    for (let c = 0; c < 3; c++) {
      const expected = (grey / 255 - pre.mean[c]!) / pre.std[c]!;
      const plane = out.pixels.subarray(c * 224 * 224, (c + 1) * 224 * 224);
      for (const v of [plane[0]!, plane[1000]!, plane[224 * 224 - 1]!]) expect(v).toBeCloseTo(expected, 5);
    }
  });

  it("computes diffusers' guidance-scale embedding", () => {
    const emb = guidanceScaleEmbedding(8.5, 256);
    expect(emb).toHaveLength(256);
    // First frequency is exp(0) = 1, so the first sin/cos pair is of (8.5 - 1) * 1000.
    expect(emb[0]).toBeCloseTo(Math.sin(7500), 4);
    expect(emb[128]).toBeCloseTo(Math.cos(7500), 4);
    // Last frequency is 1/10000.
    expect(emb[127]).toBeCloseTo(Math.sin(0.75), 5);
  });
});

/** A stand-in safety checker with diffusers' ONNX interface (clip_input, images → images, has_nsfw_concepts). */
async function writeSafetyChecker(file: string, rule: 'always' | 'out-of-range'): Promise<void> {
  const g = new GraphBuilder('safety_checker');
  const clip = g.input('clip_input', 'float32', ['batch', 3, 224, 224]);
  const images = g.input('images', 'float32', ['batch', 'height', 'width', 3]);
  g.output(images, 'out_images', 'float32', ['batch', 'height', 'width', 3]);
  // always: max(clip) > -1e9. out-of-range: max|clip| > 2.2, which CLIP-normalised pixels never reach
  // ((1 - 0.4082) / 0.2758 = 2.15), so it flags only an input that was not normalised.
  const reduced = g.op('ReduceMax', [rule === 'always' ? clip : g.op('Abs', [clip])], {
    axes: { ints: [1, 2, 3] },
    keepdims: { i: 0 },
  });
  const flag = g.op('Greater', [reduced, g.scalar(rule === 'always' ? -1e9 : 2.2)]);
  g.output(flag, 'has_nsfw_concepts', 'bool', ['batch']);
  await writeModel(file, { graph: g.build() });
}

describe('safety checker', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'imagine-safety-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const rule of ['always', 'out-of-range'] as const) {
    it(`runs per image and ${rule === 'always' ? 'blacks out flagged images' : 'passes clean images'}`, async () => {
      const model = path.join(dir, rule);
      await cp(TINY_SD, model, { recursive: true });
      await writeSafetyChecker(path.join(model, 'safety_checker/model.onnx'), rule);
      const checked = await loadEngine(model, { safetyChecker: true });
      try {
        expect(checked.info.hasSafetyChecker).toBe(true);
        const c = CASES[3]!;
        const result = await checked.generate(requestOf(c));
        expect(result.timings.safetyMs).toBeGreaterThanOrEqual(0);
        const plain = results.get(3) ?? (await engine.generate(requestOf(c)));
        for (const [k, image] of result.images.entries()) {
          if (rule === 'always') {
            expect(image.nsfw).toBe(true);
            expect(image.data.every((v) => v === 0)).toBe(true);
          } else {
            expect(image.nsfw).toBe(false);
            expect(Buffer.from(image.data).equals(Buffer.from(plain.images[k]!.data))).toBe(true);
          }
        }
      } finally {
        await checked.close();
      }
    });
  }

  it('leaves the checker off unless asked, and warns when asked but missing', async () => {
    const warnings: string[] = [];
    const e = await loadEngine(TINY_SD, {
      safetyChecker: true,
      logger: { info: () => {}, warn: (_o, msg) => void warnings.push(msg) },
    });
    try {
      expect(e.info.hasSafetyChecker).toBe(false);
      expect(warnings.join('\n')).toMatch(/safety_checker\/model\.onnx/);
      const r = await e.generate(requestOf(CASES[8]!));
      expect(r.images[0]!.nsfw).toBeUndefined();
    } finally {
      await e.close();
    }
  });
});

describe('engine lifecycle', () => {
  it('rejects generate after close, and close is idempotent', async () => {
    const e = await loadEngine(TINY_SD);
    await e.close();
    await e.close();
    await expect(e.generate(requestOf(CASES[8]!))).rejects.toBeInstanceOf(CodedError);
  });

  it('serialises concurrent generate calls and keeps each result its own', async () => {
    const [a, b] = await Promise.all([
      engine.generate(requestOf(CASES[7]!)),
      engine.generate(requestOf(CASES[8]!)),
    ]);
    await expectOracle(a.images[0]!.data, CASES[7]!.images[0]!.file);
    await expectOracle(b.images[0]!.data, CASES[8]!.images[0]!.file);
  });
});
