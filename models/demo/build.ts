/**
 * Writes the demo model: a complete SD-1.x-layout ONNX folder (model_index.json, scheduler/,
 * tokenizer/, text_encoder/, unet/, vae_decoder/) plus `demo.json`, which marks it as a demo and
 * records the options it was built from. Same options → same bytes.
 */

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ModelSpec, type WrittenModel, writeModel } from '../onnx-builder/onnx.ts';
import { type BuildDemoOptions, type DemoModelOptions, resolveDemoOptions } from './options.ts';
import { buildTinyDecoder, TINY_DECODER_CONFIG } from './taesd.ts';
import { buildTextEncoder } from './text-encoder.ts';
import { pythonJson, tokenizerFiles } from './tokenizer-files.ts';
import { buildUnet } from './unet.ts';
import { buildVaeDecoder, buildVaeEncoder, SCALING_FACTOR } from './vae.ts';

/** Bump when the generated files change for the same options: ensureDemoModel rebuilds stale folders. */
export const DEMO_MODEL_VERSION = 2;
export const DEMO_MARKER_FILE = 'demo.json';

export interface DemoCost {
  readonly textEncoder: number;
  readonly unet: number;
  readonly vaeDecoder: number;
  readonly textEncoder2?: number;
  readonly vaeDecoderTiny?: number;
}

/** Contents of `demo.json`. */
export interface DemoMarker {
  readonly demo: true;
  readonly label: string;
  readonly version: number;
  readonly kind: 'demo' | 'benchmark';
  readonly dtype: 'float32' | 'float16';
  readonly options: DemoModelOptions;
  readonly parameters: DemoCost;
  /** Multiply–accumulates per image at 64×64 latents (512×512 pixels), one UNet evaluation. */
  readonly macsPerImage512: DemoCost;
  readonly note: string;
  /** Every file of the folder except demo.json, relative, `/`-separated (filled in by buildDemoModel). */
  readonly files?: readonly string[];
}

export interface BuiltDemoModel {
  readonly dir: string;
  readonly marker: DemoMarker;
  readonly files: readonly string[];
}

const MODEL_INDEX = {
  _class_name: 'OnnxStableDiffusionPipeline',
  _diffusers_version: '0.40.0.dev0',
  text_encoder: ['diffusers', 'OnnxRuntimeModel'],
  unet: ['diffusers', 'OnnxRuntimeModel'],
  vae_decoder: ['diffusers', 'OnnxRuntimeModel'],
  tokenizer: ['transformers', 'CLIPTokenizer'],
  scheduler: ['diffusers', 'PNDMScheduler'],
  safety_checker: [null, null],
  feature_extractor: [null, null],
  requires_safety_checker: false,
} as const;

/** SD 1.5's scheduler_config.json. */
const SCHEDULER_CONFIG = {
  _class_name: 'PNDMScheduler',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
} as const;

/** SD-Turbo's scheduler_config.json (EulerAncestral, trailing timesteps, epsilon). */
const TURBO_SCHEDULER_CONFIG = {
  _class_name: 'EulerAncestralDiscreteScheduler',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  steps_offset: 1,
  timestep_spacing: 'trailing',
  trained_betas: null,
} as const;

const SDXL_MODEL_INDEX = {
  _class_name: 'ORTStableDiffusionXLPipeline',
  _diffusers_version: '0.40.0.dev0',
  force_zeros_for_empty_prompt: true,
  text_encoder: ['diffusers', 'OnnxRuntimeModel'],
  text_encoder_2: ['diffusers', 'OnnxRuntimeModel'],
  unet: ['diffusers', 'OnnxRuntimeModel'],
  vae_decoder: ['diffusers', 'OnnxRuntimeModel'],
  tokenizer: ['transformers', 'CLIPTokenizer'],
  tokenizer_2: ['transformers', 'CLIPTokenizer'],
  scheduler: ['diffusers', 'EulerAncestralDiscreteScheduler'],
} as const;

interface Graphs {
  readonly options: DemoModelOptions;
  readonly textEncoder2?: { model: ModelSpec; parameters: number; macs: number };
  readonly vaeDecoderTiny?: { model: ModelSpec; parameters: number; macs: number };
  readonly textEncoder: { model: ModelSpec; parameters: number; macs: number };
  readonly unet: { model: ModelSpec; parameters: number; macs: number };
  readonly vaeDecoder: { model: ModelSpec; parameters: number; macs: number };
}

function graphs(input: BuildDemoOptions): Graphs {
  const options = resolveDemoOptions(input);
  // Weights are generated lazily at write time, so building the graphs alone is cheap.
  const te2 = options.textEncoder2;
  const sdxl = te2 !== undefined;
  return {
    options,
    textEncoder: buildTextEncoder(options, sdxl ? { hiddenStates: true } : {}),
    unet: buildUnet(options, { latent: 64 }),
    vaeDecoder: buildVaeDecoder(options, { latent: 64 }),
    ...(te2 === undefined
      ? {}
      : {
          textEncoder2: buildTextEncoder(options, {
            name: 'text_encoder_2',
            hiddenSize: te2.hiddenSize,
            layers: te2.layers,
            heads: te2.heads,
            seedSalt: 0x7e48,
            hiddenStates: true,
            projection: te2.hiddenSize,
          }),
        }),
    ...(options.tinyDecoder === true ? { vaeDecoderTiny: buildTinyDecoder(options, { latent: 64 }) } : {}),
  };
}

function markerOf(g: Graphs, scale: BuildDemoOptions['scale']): DemoMarker {
  const o = g.options;
  return {
    demo: true,
    label: o.label,
    version: DEMO_MODEL_VERSION,
    kind: scale === 'sd15' ? 'benchmark' : 'demo',
    dtype: o.fp16 ? 'float16' : 'float32',
    options: o,
    parameters: {
      textEncoder: g.textEncoder.parameters,
      unet: g.unet.parameters,
      vaeDecoder: g.vaeDecoder.parameters,
      ...(g.textEncoder2 === undefined ? {} : { textEncoder2: g.textEncoder2.parameters }),
      ...(g.vaeDecoderTiny === undefined ? {} : { vaeDecoderTiny: g.vaeDecoderTiny.parameters }),
    },
    macsPerImage512: {
      textEncoder: g.textEncoder.macs,
      unet: g.unet.macs,
      vaeDecoder: g.vaeDecoder.macs,
      ...(g.textEncoder2 === undefined ? {} : { textEncoder2: g.textEncoder2.macs }),
      ...(g.vaeDecoderTiny === undefined ? {} : { vaeDecoderTiny: g.vaeDecoderTiny.macs }),
    },
    note: 'Procedurally generated by imagine-bot (models/demo). Its images are synthetic patterns, not Stable Diffusion output.',
  };
}

/** Parameter and MAC counts of a configuration, without writing anything. */
export function describeDemoModel(options: BuildDemoOptions = {}): DemoMarker {
  return markerOf(graphs(options), options.scale);
}

/** Writes the demo model into `outDir` (created if needed; existing files are overwritten). */
export async function buildDemoModel(
  outDir: string,
  options: BuildDemoOptions = {},
): Promise<BuiltDemoModel> {
  const g = graphs(options);
  const marker = markerOf(g, options.scale);
  const files: string[] = [];
  const text = async (rel: string, contents: string): Promise<void> => {
    const path = join(outDir, rel);
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, contents);
    files.push(rel);
  };
  const onnx = async (component: string, model: ModelSpec): Promise<void> => {
    const written: WrittenModel = await writeModel(join(outDir, component, 'model.onnx'), model, {
      externalData: g.options.externalData,
    });
    files.push(`${component}/model.onnx`);
    if (written.externalDataPath !== undefined) files.push(`${component}/model.onnx_data`);
  };

  const o = g.options;
  const family = o.family ?? 'sd1';
  await mkdir(outDir, { recursive: true });
  await text('model_index.json', pythonJson(family === 'sdxl' ? SDXL_MODEL_INDEX : MODEL_INDEX));
  await text(
    'scheduler/scheduler_config.json',
    pythonJson(family === 'sd1' ? SCHEDULER_CONFIG : TURBO_SCHEDULER_CONFIG),
  );
  for (const [name, contents] of await tokenizerFiles()) {
    // SD 2.x's and SDXL's second tokenizer are OpenCLIP's: padding with "!" (id 0).
    const openClip = (): string =>
      name.endsWith('.json') && name !== 'vocab.json'
        ? contents.replace('"pad_token": "<|endoftext|>"', '"pad_token": "!"')
        : contents;
    await text(`tokenizer/${name}`, family === 'sd2' ? openClip() : contents);
    if (family === 'sdxl') await text(`tokenizer_2/${name}`, openClip());
  }
  await onnx('text_encoder', g.textEncoder.model);
  if (g.textEncoder2 !== undefined) await onnx('text_encoder_2', g.textEncoder2.model);
  await onnx('unet', g.unet.model);
  await onnx('vae_decoder', g.vaeDecoder.model);
  if (g.vaeDecoderTiny !== undefined) {
    await onnx('vae_decoder_tiny', g.vaeDecoderTiny.model);
    await text('vae_decoder_tiny/config.json', TINY_DECODER_CONFIG);
  }
  await onnx('vae_encoder', buildVaeEncoder(g.options).model);
  const blockOut = o.vaeChannels > 0 ? o.vaeChannelMult.map((m) => m * o.vaeChannels) : [32, 32, 32, 32];
  await text(
    'vae_decoder/config.json',
    pythonJson({
      scaling_factor: family === 'sdxl' ? 0.13025 : SCALING_FACTOR,
      block_out_channels: blockOut,
    }),
  );
  // The marker goes last: a folder with a readable demo.json is complete.
  const complete: DemoMarker = { ...marker, files: [...files] };
  await text(DEMO_MARKER_FILE, `${JSON.stringify(complete, null, 2)}\n`);
  return { dir: outDir, marker: complete, files };
}
