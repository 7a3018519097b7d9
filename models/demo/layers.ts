/**
 * Building blocks shaped like diffusers' and CLIP's torch.onnx exports (GroupNorm as
 * Reshape+InstanceNormalization, SiLU as x*sigmoid(x), erf GELU, attention as MatMul/Softmax),
 * so the benchmark-sized demo model exercises the same op mix as a real SD 1.x export.
 * Weights are seeded per tensor name; multiply–accumulates are counted at a reference size.
 */

import type { GraphBuilder } from '../onnx-builder/graph.ts';
import { Prng } from './prng.ts';

export interface Net {
  readonly b: GraphBuilder;
  readonly seed: number;
  /** Multiply–accumulates of Conv/MatMul/attention, counted at the reference resolution. */
  macs: number;
}

function product(dims: readonly number[]): number {
  return dims.reduce((a, c) => a * c, 1);
}

/** A weight uniform in [-bound, bound), drawn from the stream of its own name. */
export function randomParam(net: Net, base: string, dims: readonly number[], bound: number): string {
  const count = product(dims);
  let name = '';
  name = net.b.param(base, dims, () => new Prng(net.seed, name).uniformArray(count, bound));
  return name;
}

/** A weight with every element `value` (norm scales and shifts). */
export function filledParam(net: Net, base: string, dims: readonly number[], value: number): string {
  const count = product(dims);
  return net.b.param(base, dims, () => new Float32Array(count).fill(value));
}

/** Uniform bound for a given standard deviation. */
export function boundForStd(std: number): number {
  return std * Math.sqrt(3);
}

export interface ConvOptions {
  readonly kernel?: number;
  readonly stride?: number;
  readonly bias?: boolean;
  /** Multiplies the default 1/sqrt(fan_in) weight scale. */
  readonly gain?: number;
  /** Output pixels at the reference resolution (for MAC counting). */
  readonly pixels: number;
}

export function conv2d(net: Net, x: string, inCh: number, outCh: number, o: ConvOptions): string {
  const k = o.kernel ?? 3;
  const stride = o.stride ?? 1;
  const pad = Math.floor(k / 2);
  const w = randomParam(
    net,
    'weight',
    [outCh, inCh, k, k],
    boundForStd((o.gain ?? 1) / Math.sqrt(inCh * k * k)),
  );
  const inputs = [x, w];
  if (o.bias ?? true) inputs.push(randomParam(net, 'bias', [outCh], 0.02));
  net.macs += o.pixels * outCh * inCh * k * k;
  return net.b.op('Conv', inputs, {
    kernel_shape: { ints: [k, k] },
    pads: { ints: [pad, pad, pad, pad] },
    strides: { ints: [stride, stride] },
  });
}

export interface LinearOptions {
  readonly bias?: boolean;
  readonly gain?: number;
  /** Rows (tokens × images) at the reference size (for MAC counting). */
  readonly rows: number;
}

/** x @ W (+ b), W stored [in, out] as torch.onnx stores transposed Linear weights. */
export function linear(net: Net, x: string, inF: number, outF: number, o: LinearOptions): string {
  const w = randomParam(net, 'weight', [inF, outF], boundForStd((o.gain ?? 1) / Math.sqrt(inF)));
  net.macs += o.rows * inF * outF;
  const y = net.b.matmul(x, w);
  return (o.bias ?? true) ? net.b.add(y, randomParam(net, 'bias', [outF], 0.02)) : y;
}

/** torch's GroupNorm as torch.onnx exports it at opset 17. */
export function groupNorm(net: Net, x: string, ch: number, groups: number, eps = 1e-5): string {
  const { b } = net;
  const grouped = b.reshape(x, [0, groups, -1]);
  const normed = b.op(
    'InstanceNormalization',
    [grouped, b.constFloat(new Array(groups).fill(1)), b.constFloat(new Array(groups).fill(0))],
    {
      epsilon: { f: eps },
    },
  );
  const back = b.op('Reshape', [normed, b.shape(x)]);
  const gamma = filledParam(net, 'gamma', [ch, 1, 1], 1);
  const beta = filledParam(net, 'beta', [ch, 1, 1], 0);
  return b.add(b.mul(back, gamma), beta);
}

export function layerNorm(net: Net, x: string, dim: number, eps = 1e-5): string {
  const gamma = filledParam(net, 'gamma', [dim], 1);
  const beta = filledParam(net, 'beta', [dim], 0);
  return net.b.op('LayerNormalization', [x, gamma, beta], { axis: { i: -1 }, epsilon: { f: eps } });
}

/** Exact (erf) GELU, as torch.onnx exports nn.GELU at opset 17. */
export function gelu(net: Net, x: string): string {
  const { b } = net;
  const erf = b.op('Erf', [b.mul(x, b.scalar(Math.SQRT1_2))]);
  return b.mul(b.mul(x, b.scalar(0.5)), b.add(erf, b.scalar(1)));
}

/** CLIP's quick GELU: x * sigmoid(1.702 x). */
export function quickGelu(net: Net, x: string): string {
  const { b } = net;
  return b.mul(x, b.sigmoid(b.mul(x, b.scalar(1.702))));
}

export interface AttentionOptions {
  readonly dim: number;
  readonly contextDim: number;
  readonly heads: number;
  /** Query tokens per image and key tokens per image at the reference size. */
  readonly queryTokens: number;
  readonly keyTokens: number;
  /** Images per run at the reference size (MAC counting). */
  readonly batch: number;
  readonly qkvBias?: boolean;
  /** Additive [Tq, Tk] mask (e.g. causal), in the graph's float type. */
  readonly mask?: string;
}

/** Multi-head attention of x [B,Tq,dim] over context [B,Tk,contextDim]; returns [B,Tq,dim]. */
export function attention(net: Net, x: string, context: string, o: AttentionOptions): string {
  const { b } = net;
  const headDim = o.dim / o.heads;
  if (!Number.isInteger(headDim))
    throw new RangeError(`attention: dim ${o.dim} not divisible by ${o.heads} heads`);
  const bias = o.qkvBias ?? false;
  const qRows = o.batch * o.queryTokens;
  const kRows = o.batch * o.keyTokens;
  const q = b.scoped('to_q', () => linear(net, x, o.dim, o.dim, { bias, rows: qRows }));
  const k = b.scoped('to_k', () => linear(net, context, o.contextDim, o.dim, { bias, rows: kRows }));
  const v = b.scoped('to_v', () => linear(net, context, o.contextDim, o.dim, { bias, rows: kRows }));
  const heads = (t: string, perm: readonly number[]): string =>
    b.transpose(b.reshape(t, [0, 0, o.heads, headDim]), perm);
  const qh = heads(q, [0, 2, 1, 3]); // [B,H,Tq,d]
  const kh = heads(k, [0, 2, 3, 1]); // [B,H,d,Tk]
  const vh = heads(v, [0, 2, 1, 3]); // [B,H,Tk,d]
  let scores = b.mul(b.matmul(qh, kh), b.scalar(1 / Math.sqrt(headDim)));
  if (o.mask !== undefined) scores = b.add(scores, o.mask);
  const probs = b.softmax(scores, -1);
  net.macs += 2 * o.batch * o.queryTokens * o.keyTokens * o.dim;
  const merged = b.reshape(b.transpose(b.matmul(probs, vh), [0, 2, 1, 3]), [0, 0, o.dim]);
  return b.scoped('to_out', () => linear(net, merged, o.dim, o.dim, { rows: qRows }));
}

export interface ResBlockOptions {
  readonly groups: number;
  /** Pixels per image × images at the reference size. */
  readonly pixels: number;
  /** SiLU(time embedding) [B, tembDim], when the block is timestep-conditioned. */
  readonly temb?: { readonly value: string; readonly dim: number; readonly batch: number };
}

/** diffusers' ResnetBlock2D. */
export function resBlock(net: Net, x: string, inCh: number, outCh: number, o: ResBlockOptions): string {
  const { b } = net;
  let h = b.scoped('norm1', () => groupNorm(net, x, inCh, o.groups));
  h = b.scoped('conv1', () => conv2d(net, b.silu(h), inCh, outCh, { pixels: o.pixels }));
  const temb = o.temb;
  if (temb !== undefined) {
    const t = b.scoped('time_emb_proj', () => linear(net, temb.value, temb.dim, outCh, { rows: temb.batch }));
    h = b.add(h, b.reshape(t, [0, outCh, 1, 1]));
  }
  h = b.scoped('norm2', () => groupNorm(net, h, outCh, o.groups));
  h = b.scoped('conv2', () => conv2d(net, b.silu(h), outCh, outCh, { pixels: o.pixels }));
  const skip =
    inCh === outCh
      ? x
      : b.scoped('conv_shortcut', () => conv2d(net, x, inCh, outCh, { kernel: 1, pixels: o.pixels }));
  return b.add(skip, h);
}

export interface TransformerOptions {
  readonly groups: number;
  readonly heads: number;
  /** Pixels per image at the reference size. */
  readonly tokens: number;
  readonly batch: number;
  readonly context: string;
  readonly contextDim: number;
  readonly contextTokens: number;
  /** Transformer blocks (SDXL stacks up to 10); when set, each is scoped `transformer_blocks.i`. */
  readonly depth?: number;
  /** proj_in/proj_out as Linear on tokens (SD 2.x, SDXL) instead of 1×1 convs (SD 1.x). */
  readonly linearProjection?: boolean;
}

/** diffusers' Transformer2DModel (SD 1.x): proj_in conv, self-attn, cross-attn, GEGLU FF, proj_out. */
export function spatialTransformer(net: Net, x: string, ch: number, o: TransformerOptions): string {
  const { b } = net;
  const pixels = o.tokens * o.batch;
  const normed = b.scoped('norm', () => groupNorm(net, x, ch, o.groups, 1e-6));
  const linearProj = o.linearProjection ?? false;
  const projected = linearProj
    ? normed
    : b.scoped('proj_in', () => conv2d(net, normed, ch, ch, { kernel: 1, pixels }));
  let t = b.transpose(b.reshape(projected, [0, ch, -1]), [0, 2, 1]); // [B, hw, C]
  if (linearProj) t = b.scoped('proj_in', () => linear(net, t, ch, ch, { rows: pixels }));
  const att = { dim: ch, heads: o.heads, queryTokens: o.tokens, batch: o.batch };
  const block = (): void => {
    t = b.scoped('attn1', () => {
      const n = b.scoped('norm', () => layerNorm(net, t, ch));
      return b.add(t, attention(net, n, n, { ...att, contextDim: ch, keyTokens: o.tokens }));
    });
    t = b.scoped('attn2', () => {
      const n = b.scoped('norm', () => layerNorm(net, t, ch));
      return b.add(
        t,
        attention(net, n, o.context, { ...att, contextDim: o.contextDim, keyTokens: o.contextTokens }),
      );
    });
    t = b.scoped('ff', () => {
      const n = b.scoped('norm', () => layerNorm(net, t, ch));
      const inner = 4 * ch;
      const proj = b.scoped('geglu', () => linear(net, n, ch, 2 * inner, { rows: pixels }));
      const [value, gate] = b.opN('Split', [proj, b.constInt64([inner, inner])], 2, { axis: { i: -1 } });
      const gated = b.mul(value!, gelu(net, gate!));
      return b.add(
        t,
        b.scoped('out', () => linear(net, gated, inner, ch, { rows: pixels })),
      );
    });
  };
  // Unscoped when depth is unset, so SD 1.x-shaped builds keep their tensor names (and bytes).
  if (o.depth === undefined) block();
  else for (let i = 0; i < o.depth; i++) b.scoped(`transformer_blocks.${i}`, block);
  if (linearProj) t = b.scoped('proj_out', () => linear(net, t, ch, ch, { rows: pixels }));
  const back = b.op('Reshape', [b.transpose(t, [0, 2, 1]), b.shape(projected)]);
  const out = linearProj
    ? back
    : b.scoped('proj_out', () => conv2d(net, back, ch, ch, { kernel: 1, pixels }));
  return b.add(out, x);
}

/** Nearest-neighbour upsampling of x to the spatial size of `like` (diffusers' upsample_size), then conv. */
export function upsampleTo(net: Net, x: string, like: string, ch: number, pixels: number): string {
  const { b } = net;
  const lead = b.op('Slice', [b.shape(x), b.constInt64([0]), b.constInt64([2])]);
  const spatial = b.op('Slice', [b.shape(like), b.constInt64([2]), b.constInt64([4])]);
  const sizes = b.op('Concat', [lead, spatial], { axis: { i: 0 } });
  const up = b.op('Resize', [x, '', '', sizes], {
    mode: { s: 'nearest' },
    coordinate_transformation_mode: { s: 'asymmetric' },
    nearest_mode: { s: 'floor' },
  });
  return b.scoped('conv', () => conv2d(net, up, ch, ch, { pixels }));
}

/** Nearest ×2 with constant scales, as torch.onnx exports `F.interpolate(scale_factor=2)`, then a 3×3 conv. */
export function upsample2x(net: Net, x: string, ch: number, pixels: number): string {
  const { b } = net;
  const up = b.op('Resize', [x, '', b.constFloat([1, 1, 2, 2], [4], 'float32')], {
    mode: { s: 'nearest' },
    coordinate_transformation_mode: { s: 'asymmetric' },
    nearest_mode: { s: 'floor' },
  });
  return b.scoped('conv', () => conv2d(net, up, ch, ch, { pixels }));
}

/** Sinusoidal timestep features [B, dim] (flip_sin_to_cos, shift 0, as SD 1.x), computed in float32. */
export function timestepFeatures(net: Net, t32: string, dim: number): string {
  const { b } = net;
  const half = dim / 2;
  const freqs = Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half));
  const args = b.mul(b.reshape(t32, [-1, 1]), b.constFloat(freqs, [1, half], 'float32'));
  const feats = b.op('Concat', [b.op('Cos', [args]), b.op('Sin', [args])], { axis: { i: -1 } });
  return b.floatType === 'float32' ? feats : b.castFloat(feats);
}
