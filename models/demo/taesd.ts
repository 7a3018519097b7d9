/**
 * A TAESD-shaped tiny decoder (diffusers' AutoencoderTiny decoder, as published in madebyollin/taesd and
 * taesdxl): latent_sample [B,4,h,w] → sample [B,3,8h,8w] in [-1, 1], random weights. Its input is the
 * latent as the UNet produces it: AutoencoderTiny's scaling_factor is 1.0, so pipelines divide by
 * nothing, unlike the full VAE (0.18215 / 0.13025). Layout (DecoderTiny): tanh(x/3)·3, conv 4→64, ReLU,
 * then per stage 3 (3, 3, 1) blocks, ×2 nearest upsampling and a bias-free conv, final conv 64→3, and
 * `x·2 − 1` from TAESD's [0, 1] to diffusers' [-1, 1].
 */

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GraphBuilder } from '../onnx-builder/graph.ts';
import { writeModel } from '../onnx-builder/onnx.ts';
import { conv2d, type Net } from './layers.ts';
import { DEMO_DEFAULTS, type DemoModelOptions } from './options.ts';
import type { BuiltGraph } from './text-encoder.ts';

const CHANNELS = 64;
const BLOCKS = [3, 3, 3, 1] as const;

export function buildTinyDecoder(o: DemoModelOptions, ref: { readonly latent?: number } = {}): BuiltGraph {
  const ft = o.fp16 ? 'float16' : 'float32';
  const b = new GraphBuilder('vae_decoder_tiny', ft);
  const net: Net = { b, seed: o.seed ^ 0x7ae5d, macs: 0 };
  const latent = ref.latent ?? 64;
  const relu = (x: string): string => b.op('Relu', [x]);
  const z = b.input('latent_sample', ft, ['batch', 4, 'height', 'width']);
  const clamped = b.mul(b.tanh(b.mul(z, b.scalar(1 / 3))), b.scalar(3));
  let h = b.scoped('layers.0', () => relu(conv2d(net, clamped, 4, CHANNELS, { pixels: latent * latent })));
  let layer = 2;
  BLOCKS.forEach((count, stage) => {
    const pixels = (latent * 2 ** stage) ** 2;
    for (let j = 0; j < count; j++) {
      h = b.scoped(`layers.${layer++}`, () => {
        // AutoencoderTinyBlock: ReLU(conv(ReLU(conv(ReLU(conv(x))))) + x).
        let c = relu(b.scoped('conv.0', () => conv2d(net, h, CHANNELS, CHANNELS, { pixels })));
        c = relu(b.scoped('conv.2', () => conv2d(net, c, CHANNELS, CHANNELS, { pixels })));
        c = b.scoped('conv.4', () => conv2d(net, c, CHANNELS, CHANNELS, { pixels }));
        return relu(b.add(c, h));
      });
    }
    const last = stage === BLOCKS.length - 1;
    if (!last) {
      h = b.op('Resize', [h, '', b.constFloat([1, 1, 2, 2], [4], 'float32')], {
        mode: { s: 'nearest' },
        coordinate_transformation_mode: { s: 'asymmetric' },
        nearest_mode: { s: 'floor' },
      });
      layer++;
    }
    h = b.scoped(`layers.${layer++}`, () =>
      conv2d(net, h, CHANNELS, last ? 3 : CHANNELS, {
        pixels: (latent * 2 ** (last ? stage : stage + 1)) ** 2,
        bias: last,
      }),
    );
  });
  const out = b.sub(b.mul(h, b.scalar(2)), b.scalar(1));
  b.output(out, 'sample', ft, ['batch', 3, 'image_height', 'image_width']);
  return {
    model: { graph: b.build(), docString: 'imagine-bot TAESD-shaped tiny decoder (random weights)' },
    parameters: b.parameters,
    macs: net.macs,
  };
}

/**
 * Writes a random-weight TAESD-shaped decoder into `modelDir/vae_decoder_tiny/` (model.onnx and an
 * AutoencoderTiny config.json), e.g. next to a real or fixture model, for tests and benchmarks.
 */
export async function writeTinyDecoder(
  modelDir: string,
  options: Partial<Pick<DemoModelOptions, 'seed' | 'fp16'>> = {},
): Promise<void> {
  const built = buildTinyDecoder({ ...DEMO_DEFAULTS, ...options } as DemoModelOptions, { latent: 64 });
  const dir = join(modelDir, 'vae_decoder_tiny');
  await mkdir(dir, { recursive: true });
  await writeModel(join(dir, 'model.onnx'), built.model, { externalData: false });
  await writeFile(join(dir, 'config.json'), TINY_DECODER_CONFIG);
}

/** diffusers' AutoencoderTiny config, as madebyollin/taesd ships it (scaling_factor 1.0: latents go in as is). */
export const TINY_DECODER_CONFIG = `${JSON.stringify(
  {
    _class_name: 'AutoencoderTiny',
    scaling_factor: 1.0,
    latent_channels: 4,
    decoder_block_out_channels: [CHANNELS, CHANNELS, CHANNELS, CHANNELS],
    num_decoder_blocks: BLOCKS,
  },
  null,
  1,
)}\n`;
