/**
 * The demo UNet: sample [B,4,h,w], timestep, encoder_hidden_states [B,T,D] → out_sample [B,4,h,w].
 *
 * It is the exact denoiser (posterior mean) for a made-up data distribution: latents that are smooth
 * random fields in two bands (coarse blobs and finer detail) plus a per-channel colour offset `mu`, with
 * `mu` and the band strengths set by the mean over tokens of the text embedding. With ᾱ(t) looked up
 * from SD's scaled-linear schedule, the predicted clean latent is
 *   x̂₀ = mu + g₁(t)·P₁(x − √ᾱ·mu) + g₂(t)·P₂(x − √ᾱ·mu) (+ a small learned-branch term),
 * where P₁, P₂ are band projections (average-pool, resize back, blur) and gₖ the Wiener gains
 * √ᾱ·cₖ²/(ᾱ·cₖ² + 1 − ᾱ); the output is the matching noise ε = (x − √ᾱ·x̂₀)/√(1−ᾱ). Any SD scheduler
 * therefore converges to a smooth, seed-dependent, prompt-tinted latent in a few steps.
 *
 * The learned branch is a diffusers-shaped UNet (ResNet blocks, spatial transformers, skips) whose width
 * and depth are options: tiny for the demo, SD 1.5-sized for benchmarks. Its output is scaled down so
 * it perturbs the image only slightly.
 */

import { GraphBuilder } from '../onnx-builder/graph.ts';
import {
  conv2d,
  groupNorm,
  linear,
  type Net,
  resBlock,
  spatialTransformer,
  timestepFeatures,
  upsample2x,
  upsampleTo,
} from './layers.ts';
import type { DemoModelOptions } from './options.ts';
import type { BuiltGraph } from './text-encoder.ts';

/** SD 1.x training schedule (scaled_linear, 0.00085 → 0.012, 1000 steps): ᾱ for t = 0..999, plus ᾱ(999) again. */
export function alphasCumprod(): Float32Array {
  const n = 1000;
  const a = Math.sqrt(0.00085);
  const z = Math.sqrt(0.012);
  const out = new Float32Array(n + 1);
  let prod = 1;
  for (let i = 0; i < n; i++) {
    const beta = (a + ((z - a) * i) / (n - 1)) ** 2;
    prod *= 1 - beta;
    out[i] = prod;
  }
  out[n] = out[n - 1]!;
  return out;
}

/** Pool sizes of the two bands (latent pixels) and their target standard deviations. */
const COARSE_POOL = 8;
const COARSE_BLUR = 7;
const FINE_POOL = 4;
const FINE_BLUR = 3;
const COARSE_STD = 0.9;
const FINE_STD = 0.2;
/**
 * Text conditioning: sin of a projection of the token-mean embedding. Prompts share most of that mean
 * (position and padding embeddings), so a high frequency turns their small differences into distinct
 * colour offsets (MU_SCALE) and band strengths (GAIN_MOD, log scale), like a smooth hash.
 */
const TEXT_FREQ = 20;
const MU_SCALE = 0.15;
const GAIN_MOD = 0.12;

export interface UnetReference {
  /** Latent height and width used for MAC counting. @defaultValue 64 */
  readonly latent?: number;
}

export function buildUnet(o: DemoModelOptions, ref: UnetReference = {}): BuiltGraph {
  const ft = o.fp16 ? 'float16' : 'float32';
  const b = new GraphBuilder('unet', ft);
  const net: Net = { b, seed: o.seed ^ 0x0e7, macs: 0 };
  // SDXL's context is both encoders' hidden states side by side.
  const D = o.hiddenSize + (o.textEncoder2?.hiddenSize ?? 0);
  const latent = ref.latent ?? 64;

  const sample = b.input('sample', ft, ['batch', 4, 'height', 'width']);
  const timestep =
    o.timestep === 'int64'
      ? b.input('timestep', 'int64', ['batch'])
      : o.timestep === 'scalar'
        ? b.input('timestep', 'float32', [])
        : b.input('timestep', ft, ['batch']);
  const context = b.input('encoder_hidden_states', ft, ['batch', 'sequence', D]);
  const added =
    o.textEncoder2 === undefined
      ? undefined
      : {
          textEmbeds: b.input('text_embeds', ft, ['batch', o.textEncoder2.hiddenSize]),
          timeIds: b.input('time_ids', ft, ['batch', 6]),
          dim: o.textEncoder2.hiddenSize,
        };

  // Schedule lookup in float32: t → ᾱ(t) by linear interpolation (fractional timesteps come from
  // Karras-sigma schedulers), [B] or [1].
  const alreadyF32 = o.timestep === 'scalar' || (o.timestep === 'float' && ft === 'float32');
  const t32 = b.reshape(alreadyF32 ? timestep : b.cast(timestep, 'float32'), [-1]);
  const tc = b.op('Clip', [t32, b.constFloat([0], [], 'float32'), b.constFloat([999], [], 'float32')]);
  const t0 = b.op('Floor', [tc]);
  const i0 = b.cast(t0, 'int64');
  const frac = b.sub(tc, t0);
  const table = alphasCumprod();
  const abLo = b.tensor('alphas_cumprod', 'float32', [1000], table.slice(0, 1000), true);
  const abHi = b.tensor('alphas_cumprod_next', 'float32', [1000], table.slice(1, 1001), true);
  const lo = b.op('Gather', [abLo, i0]);
  const hi = b.op('Gather', [abHi, i0]);
  const ab = b.reshape(b.add(lo, b.mul(frac, b.sub(hi, lo))), [-1, 1, 1, 1]);
  const oneF = b.constFloat([1], [], 'float32');
  const oneMinusAb = b.sub(oneF, ab);
  const sqrtAb = b.op('Sqrt', [ab]);
  const invSqrtOneMinusAb = b.div(oneF, b.op('Sqrt', [oneMinusAb]));
  const toFt = (x: string): string => (ft === 'float32' ? x : b.castFloat(x));

  // Text conditioning from the mean over tokens.
  const pooled = b.reduceMean(context, [1], false); // [B, D]
  const mu = b.scoped('mu', () =>
    b.reshape(
      b.mul(b.op('Sin', [linear(net, pooled, D, 4, { rows: 1, gain: TEXT_FREQ })]), b.scalar(MU_SCALE)),
      [0, 4, 1, 1],
    ),
  );
  const bandGain = (name: string, pool: number, std: number): string =>
    b.scoped(name, () => {
      // c: per-direction signal std of the band (pixel std × pool size), modulated by the prompt.
      const mod = b.mul(
        b.op('Sin', [linear(net, pooled, D, 4, { rows: 1, gain: TEXT_FREQ })]),
        b.scalar(GAIN_MOD),
      );
      const c = b.mul(b.op('Exp', [mod]), b.scalar(std * pool));
      const c2 = b.reshape(ft === 'float32' ? b.mul(c, c) : b.cast(b.mul(c, c), 'float32'), [0, 4, 1, 1]);
      const gain = b.div(b.mul(sqrtAb, c2), b.add(b.mul(ab, c2), oneMinusAb));
      return toFt(gain);
    });
  const g1 = bandGain('coarse', COARSE_POOL, COARSE_STD);
  const g2 = bandGain('fine', FINE_POOL, FINE_STD);

  const centred = b.sub(sample, b.mul(toFt(sqrtAb), mu));
  const sizes = b.shape(centred);
  // Band projection: average-pool, bilinear back to full size, then a box blur of about the pool size to
  // round off the bilinear creases (cheaper than ort's bicubic Resize by ~50×).
  const band = (pool: number, blur: number): string => {
    const pooled = b.op('AveragePool', [centred], {
      kernel_shape: { ints: [pool, pool] },
      strides: { ints: [pool, pool] },
      ceil_mode: { i: 1 },
    });
    const up = b.op('Resize', [pooled, '', '', sizes], { mode: { s: 'linear' } });
    const p = Math.floor(blur / 2);
    return b.op('AveragePool', [up], {
      kernel_shape: { ints: [blur, blur] },
      pads: { ints: [p, p, p, p] },
      count_include_pad: { i: 0 },
    });
  };
  const coarse = band(COARSE_POOL, COARSE_BLUR);
  const fine = b.sub(band(FINE_POOL, FINE_BLUR), coarse);
  let x0 = b.add(mu, b.add(b.mul(g1, coarse), b.mul(g2, fine)));

  if (o.channels > 0) {
    const delta = b.scoped('branch', () => learnedBranch(net, o, sample, t32, context, latent, added));
    x0 = b.add(x0, b.mul(delta, b.scalar(o.branchScale)));
  }

  const eps = b.mul(b.sub(sample, b.mul(toFt(sqrtAb), x0)), toFt(invSqrtOneMinusAb));
  b.output(eps, 'out_sample', ft, ['batch', 4, 'height', 'width']);
  return {
    model: { graph: b.build(), docString: 'imagine-bot demo UNet (procedural denoiser + learned branch)' },
    parameters: b.parameters,
    macs: net.macs,
  };
}

/** diffusers UNet2DConditionModel layout: conv_in, down blocks, mid block, up blocks with skips, conv_out. */
function learnedBranch(
  net: Net,
  o: DemoModelOptions,
  sample: string,
  t32: string,
  context: string,
  latent: number,
  added: { readonly textEmbeds: string; readonly timeIds: string; readonly dim: number } | undefined,
): string {
  const { b } = net;
  const C = o.channels;
  const groups = o.groups ?? 32;
  const tembDim = 4 * C;
  const levels = o.channelMult.length;
  const pixelsAt = (level: number): number => Math.ceil(latent / 2 ** level) ** 2;

  const temb = b.scoped('time_embedding', () => {
    const feats = timestepFeatures(net, t32, C);
    const l1 = b.scoped('linear_1', () => linear(net, feats, C, tembDim, { rows: 1 }));
    return b.scoped('linear_2', () => linear(net, b.silu(l1), tembDim, tembDim, { rows: 1 }));
  });
  let tembSum = temb;
  if (added !== undefined) {
    // SDXL's text_time conditioning: 256-wide sinusoidal features of each of the 6 time ids, concatenated
    // with the pooled text embedding, through add_embedding, added to the timestep embedding.
    const timeFeats = b.reshape(
      timestepFeatures(net, b.reshape(b.cast(added.timeIds, 'float32'), [-1]), 256),
      [-1, 6 * 256],
    );
    const cond = b.op('Concat', [added.textEmbeds, timeFeats], { axis: { i: -1 } });
    const inDim = added.dim + 6 * 256;
    const aug = b.scoped('add_embedding', () => {
      const l1 = b.scoped('linear_1', () => linear(net, cond, inDim, tembDim, { rows: 1 }));
      return b.scoped('linear_2', () => linear(net, b.silu(l1), tembDim, tembDim, { rows: 1 }));
    });
    tembSum = b.add(temb, aug);
  }
  const tembAct = { value: b.silu(tembSum), dim: tembDim, batch: 1 };
  const contextDim = o.hiddenSize + (o.textEncoder2?.hiddenSize ?? 0);
  const transformer = (x: string, ch: number, level: number): string =>
    spatialTransformer(net, x, ch, {
      groups,
      heads: o.headDim === undefined ? o.heads : ch / o.headDim,
      tokens: pixelsAt(level),
      batch: 1,
      context,
      contextDim,
      contextTokens: 77,
      ...(o.transformerDepth === undefined ? {} : { depth: o.transformerDepth[level]! }),
      ...(o.linearProjection === true ? { linearProjection: true } : {}),
    });

  let h = b.scoped('conv_in', () => conv2d(net, sample, 4, C, { pixels: pixelsAt(0) }));
  const skips: { value: string; ch: number }[] = [{ value: h, ch: C }];
  let ch = C;
  for (let level = 0; level < levels; level++) {
    const outCh = C * o.channelMult[level]!;
    b.scoped(`down_blocks.${level}`, () => {
      for (let j = 0; j < o.layers; j++) {
        h = b.scoped(`resnets.${j}`, () =>
          resBlock(net, h, ch, outCh, { groups, pixels: pixelsAt(level), temb: tembAct }),
        );
        ch = outCh;
        if (o.attentionLevels[level] === true)
          h = b.scoped(`attentions.${j}`, () => transformer(h, ch, level));
        skips.push({ value: h, ch });
      }
      if (level < levels - 1) {
        h = b.scoped('downsamplers.0', () =>
          conv2d(net, h, ch, ch, { stride: 2, pixels: pixelsAt(level + 1) }),
        );
        skips.push({ value: h, ch });
      }
    });
  }
  const deepest = levels - 1;
  h = b.scoped('mid_block', () => {
    let m = b.scoped('resnets.0', () =>
      resBlock(net, h, ch, ch, { groups, pixels: pixelsAt(deepest), temb: tembAct }),
    );
    m = b.scoped('attentions.0', () => transformer(m, ch, deepest));
    return b.scoped('resnets.1', () =>
      resBlock(net, m, ch, ch, { groups, pixels: pixelsAt(deepest), temb: tembAct }),
    );
  });
  for (let level = levels - 1; level >= 0; level--) {
    const outCh = C * o.channelMult[level]!;
    b.scoped(`up_blocks.${levels - 1 - level}`, () => {
      for (let j = 0; j <= o.layers; j++) {
        const skip = skips.pop()!;
        const cat = b.op('Concat', [h, skip.value], { axis: { i: 1 } });
        h = b.scoped(`resnets.${j}`, () =>
          resBlock(net, cat, ch + skip.ch, outCh, { groups, pixels: pixelsAt(level), temb: tembAct }),
        );
        ch = outCh;
        if (o.attentionLevels[level] === true)
          h = b.scoped(`attentions.${j}`, () => transformer(h, ch, level));
      }
      if (level > 0) {
        const like = skips[skips.length - 1]!.value;
        h = b.scoped('upsamplers.0', () =>
          o.upsample === 'scale2'
            ? upsample2x(net, h, ch, pixelsAt(level - 1))
            : upsampleTo(net, h, like, ch, pixelsAt(level - 1)),
        );
      }
    });
  }
  const normed = b.scoped('conv_norm_out', () => groupNorm(net, h, ch, groups));
  return b.scoped('conv_out', () => conv2d(net, b.silu(normed), ch, 4, { pixels: pixelsAt(0) }));
}
