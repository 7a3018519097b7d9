/**
 * Full-size benchmark presets of each family, built with the project's own ONNX builder (random weights,
 * not Stable Diffusion): the published models' layer structure and widths, so parameters and FLOPs land
 * near theirs. What is approximated is listed in `APPROXIMATIONS` and printed with every run.
 */
import type { BuildDemoOptions } from '../demo/index.ts';

export interface BenchPreset {
  readonly build: BuildDemoOptions;
  /** The request defaults the published model is run with. */
  readonly size: number;
  readonly steps: number;
  readonly scheduler: 'pndm' | 'euler_a';
  readonly guidance: number;
  /** Published parameter counts (diffusers configs of the real checkpoints), for comparison. */
  readonly published?: Readonly<Record<string, number>>;
}

const VAE = { vaeChannels: 128, vaeChannelMult: [1, 2, 4, 4], vaeLayers: 3 } as const;

/** SD 2.1 base's shape (SD-Turbo): OpenCLIP ViT-H text encoder (23 layers as exported), linear projections. */
const SD2_SHAPE = {
  scale: 'sd15',
  family: 'sd2',
  hiddenSize: 1024,
  textLayers: 23,
  textHeads: 16,
  textActivation: 'gelu',
  channels: 320,
  channelMult: [1, 2, 4, 4],
  layers: 2,
  attentionLevels: [true, true, true, false],
  headDim: 64,
  linearProjection: true,
  groups: 32,
  ...VAE,
  tinyDecoder: true,
  externalData: true,
  label: 'Benchmark model (SD-Turbo / SD 2.1-sized, random weights, not Stable Diffusion)',
} as const satisfies BuildDemoOptions;

/** SDXL base's shape: CLIP ViT-L + OpenCLIP ViT-bigG, UNet 320/640/1280 with 0/2/10 transformer blocks. */
const SDXL_SHAPE = {
  scale: 'sd15',
  family: 'sdxl',
  hiddenSize: 768,
  textLayers: 12,
  textHeads: 12,
  textEncoder2: { hiddenSize: 1280, layers: 32, heads: 20 },
  channels: 320,
  channelMult: [1, 2, 4],
  layers: 2,
  attentionLevels: [false, true, true],
  transformerDepth: [0, 2, 10],
  headDim: 64,
  linearProjection: true,
  groups: 32,
  ...VAE,
  tinyDecoder: true,
  externalData: true,
  label: 'Benchmark model (SDXL-sized, random weights, not Stable Diffusion)',
} as const satisfies BuildDemoOptions;

const SD21_PUBLISHED = { textEncoder: 340_387_840, unet: 865_910_724, vaeDecoder: 49_490_199 };
const SDXL_PUBLISHED = {
  textEncoder: 123_060_480,
  textEncoder2: 694_659_840,
  unet: 2_567_463_684,
  vaeDecoder: 49_490_199,
};

export const FAMILY_PRESETS: Readonly<Record<string, BenchPreset>> = {
  'sd-turbo': {
    build: SD2_SHAPE,
    size: 512,
    steps: 1,
    scheduler: 'euler_a',
    guidance: 0,
    published: SD21_PUBLISHED,
  },
  sdxl: {
    build: SDXL_SHAPE,
    size: 1024,
    steps: 30,
    scheduler: 'euler_a',
    guidance: 5,
    published: SDXL_PUBLISHED,
  },
  'sdxl-turbo': {
    build: SDXL_SHAPE,
    size: 512,
    steps: 1,
    scheduler: 'euler_a',
    guidance: 0,
    published: SDXL_PUBLISHED,
  },
};

/** Where the built models differ from the real architectures (cost-neutral unless said). */
export const APPROXIMATIONS = [
  'UNet output = a procedural denoiser + the full-size learned UNet branch (the branch is the cost; the procedural part is a few pooling ops)',
  'text embeddings are factored (id mod 512, id div 512): the 49408-row table is not stored, lookups cost the same',
  'SDXL: both text encoders use one MLP activation (CLIP-L quick GELU; bigG uses erf GELU in the original)',
  'VAE decoder: the AutoencoderKL decoder plus a cheap procedural colour path; no VAE encoder',
  'TAESD decoder: AutoencoderTiny decoder layout exactly (64 channels, 3/3/3/1 blocks), random weights',
];
