/**
 * The demo VAE decoder: latent_sample [B,4,h,w] → sample [B,3,8h,8w] in [-1, 1].
 * Procedural path: undo the pipeline's 1/scaling_factor, mix the 4 latent channels into RGB (plus a
 * sine term for richer colours), bilinear ×8 upsampling, tanh. An optional learned branch has the layout
 * of diffusers' AutoencoderKL decoder (post_quant_conv, mid block with attention, up blocks) for
 * benchmark-sized builds; its output is scaled down so images stay smooth.
 */

import { GraphBuilder } from '../onnx-builder/graph.ts';
import { attention, conv2d, groupNorm, type Net, resBlock } from './layers.ts';
import type { DemoModelOptions } from './options.ts';
import type { BuiltGraph } from './text-encoder.ts';

export const SCALING_FACTOR = 0.18215;

/** Latent → RGB mixing (rows R, G, B), chosen so each latent channel has a distinct hue. */
const MIX = [
  [0.9, 0.45, -0.35, 0.25],
  [-0.3, 0.8, 0.5, -0.25],
  [0.25, -0.45, 0.75, 0.6],
];
const MIX_BIAS = [0.05, 0, -0.05];
const WAVE = [
  [1.6, -0.9, 0.4, 1.1],
  [0.5, 1.5, -1.2, 0.6],
  [-1.1, 0.4, 1.4, -1.3],
];
const WAVE_PHASE = [0, Math.PI, 0.2];
const WAVE_AMP = 0.35;

export function buildVaeDecoder(o: DemoModelOptions, ref: { readonly latent?: number } = {}): BuiltGraph {
  const ft = o.fp16 ? 'float16' : 'float32';
  const b = new GraphBuilder('vae_decoder', ft);
  const net: Net = { b, seed: o.seed ^ 0x7ae, macs: 0 };
  const latent = ref.latent ?? 64;
  const z = b.input('latent_sample', ft, ['batch', 4, 'height', 'width']);

  const conv1x1 = (x: string, rows: number[][], bias: number[], scale: number): string =>
    b.op('Conv', [
      x,
      b.constFloat(
        rows.flat().map((v) => v * scale),
        [3, 4, 1, 1],
      ),
      b.constFloat(bias, [3]),
    ]);
  const colour = conv1x1(z, MIX, MIX_BIAS, SCALING_FACTOR);
  const wave = b.op('Sin', [conv1x1(z, WAVE, WAVE_PHASE, SCALING_FACTOR)]);
  const pre = b.add(colour, b.mul(wave, b.scalar(WAVE_AMP)));
  let rgb = b.op('Resize', [pre, '', b.constFloat([1, 1, 8, 8], [4], 'float32')], { mode: { s: 'linear' } });

  if (o.vaeChannels > 0) {
    const delta = b.scoped('decoder', () => learnedDecoder(net, o, z, latent));
    rgb = b.add(rgb, b.mul(delta, b.scalar(o.branchScale)));
  }
  b.output(b.tanh(rgb), 'sample', ft, ['batch', 3, 'image_height', 'image_width']);
  return {
    model: { graph: b.build(), docString: 'imagine-bot demo VAE decoder (procedural)' },
    parameters: b.parameters,
    macs: net.macs,
  };
}

/** diffusers' AutoencoderKL decoder layout (block_out_channels = vaeChannels × vaeChannelMult). */
function learnedDecoder(net: Net, o: DemoModelOptions, z: string, latent: number): string {
  const { b } = net;
  const chans = o.vaeChannelMult.map((m) => o.vaeChannels * m).reverse();
  const groups = Math.min(32, o.vaeChannels);
  const pixelsAt = (level: number): number => (latent * 2 ** level) ** 2;
  let ch = chans[0]!;
  const pq = b.scoped('post_quant_conv', () => conv2d(net, z, 4, 4, { kernel: 1, pixels: pixelsAt(0) }));
  let h = b.scoped('conv_in', () => conv2d(net, pq, 4, ch, { pixels: pixelsAt(0) }));
  h = b.scoped('mid_block', () => {
    let m = b.scoped('resnets.0', () => resBlock(net, h, ch, ch, { groups, pixels: pixelsAt(0) }));
    m = b.scoped('attentions.0', () => {
      const n = b.scoped('group_norm', () => groupNorm(net, m, ch, groups, 1e-6));
      const tokens = b.transpose(b.reshape(n, [0, ch, -1]), [0, 2, 1]);
      const a = attention(net, tokens, tokens, {
        dim: ch,
        contextDim: ch,
        heads: 1,
        queryTokens: pixelsAt(0),
        keyTokens: pixelsAt(0),
        batch: 1,
        qkvBias: true,
      });
      return b.add(m, b.op('Reshape', [b.transpose(a, [0, 2, 1]), b.shape(m)]));
    });
    return b.scoped('resnets.1', () => resBlock(net, m, ch, ch, { groups, pixels: pixelsAt(0) }));
  });
  for (let level = 0; level < chans.length; level++) {
    const outCh = chans[level]!;
    b.scoped(`up_blocks.${level}`, () => {
      for (let j = 0; j < o.vaeLayers; j++) {
        h = b.scoped(`resnets.${j}`, () => resBlock(net, h, ch, outCh, { groups, pixels: pixelsAt(level) }));
        ch = outCh;
      }
      if (level < chans.length - 1) {
        const up = b.op('Resize', [h, '', b.constFloat([1, 1, 2, 2], [4], 'float32')], {
          mode: { s: 'nearest' },
        });
        h = b.scoped('upsamplers.0.conv', () => conv2d(net, up, ch, ch, { pixels: pixelsAt(level + 1) }));
      }
    });
  }
  const normed = b.scoped('conv_norm_out', () => groupNorm(net, h, ch, groups, 1e-6));
  const out = b.scoped('conv_out', () =>
    conv2d(net, b.silu(normed), ch, 3, { pixels: pixelsAt(chans.length - 1) }),
  );
  return out;
}

/**
 * The demo VAE encoder: sample [B,3,H,W] in [-1, 1] → latent_parameters [B,8,H/8,W/8] (optimum's
 * layout: mean, then log-variance). Procedural: 8x8 average pooling, then the transposed colour mix
 * (so a picture's hues land roughly where the decoder puts them back) as the mean, and a small fixed
 * log-variance, so image-to-image on the demo model draws from the image's generator as diffusers does.
 */
export function buildVaeEncoder(o: DemoModelOptions): BuiltGraph {
  const ft = o.fp16 ? 'float16' : 'float32';
  const b = new GraphBuilder('vae_encoder', ft);
  const x = b.input('sample', ft, ['batch', 3, 'height', 'width']);
  const pooled = b.op('AveragePool', [x], { kernel_shape: { ints: [8, 8] }, strides: { ints: [8, 8] } });
  const weights: number[] = [];
  for (let c = 0; c < 4; c++) for (let r = 0; r < 3; r++) weights.push((0.5 * MIX[r]![c]!) / SCALING_FACTOR);
  for (let i = 0; i < 4 * 3; i++) weights.push(0);
  const bias = [0, 0, 0, 0, -6, -6, -6, -6];
  const params = b.op('Conv', [pooled, b.constFloat(weights, [8, 3, 1, 1]), b.constFloat(bias, [8])]);
  b.output(params, 'latent_parameters', ft, ['batch', 8, 'latent_height', 'latent_width']);
  return {
    model: { graph: b.build(), docString: 'imagine-bot demo VAE encoder (procedural)' },
    parameters: b.parameters,
    macs: 0,
  };
}
