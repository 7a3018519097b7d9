/** Options and presets of the procedural demo model. */

/** How the UNet takes its timestep: `float` [B] in the model's float type (diffusers' export), `int64` [B]
 * (2022 diffusers exports), or `scalar` float32 [] (optimum ≥ 1.24). */
export type TimestepInput = 'float' | 'int64' | 'scalar';

export interface DemoModelOptions {
  /** Seeds every weight. @defaultValue 1234 */
  readonly seed: number;
  /** Text encoder width (= UNet cross-attention context width). @defaultValue 32 */
  readonly hiddenSize: number;
  /** Transformer layers of the text encoder. @defaultValue 1 */
  readonly textLayers: number;
  /** Attention heads of the text encoder. @defaultValue 2 */
  readonly textHeads: number;
  /**
   * Base channels of the UNet's learned branch (diffusers-style down/mid/up blocks); 0 leaves only the
   * procedural denoiser. @defaultValue 4
   */
  readonly channels: number;
  /** Channel multiplier per UNet level; one level per entry. @defaultValue [1, 2, 4] */
  readonly channelMult: readonly number[];
  /** ResNet blocks per UNet down level (up levels get one more, as in diffusers). @defaultValue 1 */
  readonly layers: number;
  /** Which UNet levels carry a spatial transformer (self + cross attention). @defaultValue [false, false, true] */
  readonly attentionLevels: readonly boolean[];
  /** Attention heads in the UNet transformers. @defaultValue 1 */
  readonly heads: number;
  /** GroupNorm groups (must divide every channel count). @defaultValue min(32, channels) */
  readonly groups?: number;
  /** Weight of the learned branch's output in the denoised estimate. @defaultValue 0.02 */
  readonly branchScale: number;
  /** Base channels of the VAE decoder's learned branch; 0: procedural decoder only. @defaultValue 0 */
  readonly vaeChannels: number;
  /** VAE decoder channel multipliers, lowest resolution last (as diffusers lists them). @defaultValue [1, 2, 4, 4] */
  readonly vaeChannelMult: readonly number[];
  /** ResNet blocks per VAE decoder level. @defaultValue 3 */
  readonly vaeLayers: number;
  /** float16 weights and float16 inputs/outputs (int inputs stay integer). @defaultValue false */
  readonly fp16: boolean;
  /** @defaultValue 'float' */
  readonly timestep: TimestepInput;
  /** Element type of the text encoder's `input_ids`. @defaultValue 'int32' */
  readonly inputIds: 'int32' | 'int64';
  /** Write weights to `model.onnx_data` beside each `model.onnx`. @defaultValue false */
  readonly externalData: boolean;
  /** Shown to users wherever the model is named. @defaultValue 'Demo model (procedural, not Stable Diffusion)' */
  readonly label: string;
  /**
   * How the UNet upsamples: `to-skip` resizes to the skip connection's size (any multiple of 8 works, like
   * diffusers' `upsample_size` path); `scale2` doubles, as torch.onnx exports of SD UNets do, so the
   * latent must divide by 2^(levels-1). @defaultValue 'to-skip'
   */
  readonly upsample: 'to-skip' | 'scale2';
  /**
   * Which pipeline's folder to write: `sd1` (CLIP ViT-L, PNDM), `sd2` (OpenCLIP padding, linear
   * projections; SD-Turbo's EulerAncestral trailing schedule), or `sdxl` (two text encoders with hidden
   * states, text_embeds/time_ids). @defaultValue 'sd1'
   */
  readonly family?: 'sd1' | 'sd2' | 'sdxl';
  /** Per-level attention heads = channels / headDim (SD 2.x, SDXL); unset: `heads` everywhere. */
  readonly headDim?: number;
  /** Transformer blocks per UNet level (SDXL: [0, 2, 10]); unset: one, unscoped (SD 1.x names). */
  readonly transformerDepth?: readonly number[];
  /** Linear proj_in/proj_out in the UNet transformers (SD 2.x, SDXL). @defaultValue false */
  readonly linearProjection?: boolean;
  /** Text encoder MLP activation: CLIP's quick GELU, or OpenCLIP's erf GELU. @defaultValue 'quick_gelu' */
  readonly textActivation?: 'quick_gelu' | 'gelu';
  /** SDXL's second text encoder (OpenCLIP ViT-bigG: 1280 wide, 32 layers, 20 heads, 1280 projection). */
  readonly textEncoder2?: { readonly hiddenSize: number; readonly layers: number; readonly heads: number };
  /** Also write a TAESD-shaped tiny decoder to `vae_decoder_tiny/` (AutoencoderTiny's decoder). */
  readonly tinyDecoder?: boolean;
}

export type DemoScale = 'demo' | 'sd15';

export const DEMO_DEFAULTS = {
  seed: 1234,
  hiddenSize: 32,
  textLayers: 1,
  textHeads: 2,
  channels: 4,
  channelMult: [1, 2, 4],
  layers: 1,
  attentionLevels: [false, false, true],
  heads: 1,
  branchScale: 0.02,
  vaeChannels: 0,
  vaeChannelMult: [1, 2, 4, 4],
  vaeLayers: 3,
  fp16: false,
  timestep: 'float',
  inputIds: 'int32',
  externalData: false,
  label: 'Demo model (procedural, not Stable Diffusion)',
  upsample: 'to-skip',
} as const satisfies Omit<DemoModelOptions, 'groups'>;

/**
 * Benchmark preset: the layer structure and widths of SD 1.5 (CLIP ViT-L/14 text encoder, UNet with
 * 320/640/1280/1280 channels, 2 ResNets + transformers per level, 8 heads, 768-wide context; VAE decoder
 * 512/512/256/128), so params and FLOPs at 64×64 latents land near SD 1.5's. Weights go to external data
 * (over protobuf's 2 GiB limit in float32).
 */
export const SD15_PRESET = {
  hiddenSize: 768,
  textLayers: 12,
  textHeads: 12,
  channels: 320,
  channelMult: [1, 2, 4, 4],
  layers: 2,
  attentionLevels: [true, true, true, false],
  heads: 8,
  groups: 32,
  vaeChannels: 128,
  vaeChannelMult: [1, 2, 4, 4],
  vaeLayers: 3,
  externalData: true,
  label: 'Benchmark model (SD 1.5-sized, random weights, not Stable Diffusion)',
} as const satisfies Partial<DemoModelOptions>;

export interface BuildDemoOptions extends Partial<DemoModelOptions> {
  /** Preset the other options start from. @defaultValue 'demo' */
  readonly scale?: DemoScale;
}

/** Fills defaults, applies the preset, and validates. */
export function resolveDemoOptions(input: BuildDemoOptions = {}): DemoModelOptions {
  const { scale = 'demo', ...overrides } = input;
  const preset: Partial<DemoModelOptions> = scale === 'sd15' ? SD15_PRESET : {};
  const merged: DemoModelOptions = { ...DEMO_DEFAULTS, ...preset, ...stripUndefined(overrides) };
  const groups = merged.groups ?? Math.min(32, merged.channels > 0 ? merged.channels : 32);
  const o: DemoModelOptions = { ...merged, groups };
  const fail = (msg: string): never => {
    throw new RangeError(`demo model options: ${msg}`);
  };
  if (!Number.isInteger(o.seed) || o.seed < 0 || o.seed > 0xffff_ffff) fail('seed must be a uint32');
  if (o.hiddenSize % o.textHeads !== 0) fail('hiddenSize must be divisible by textHeads');
  if (o.hiddenSize % 2 !== 0 || o.hiddenSize < 2) fail('hiddenSize must be even');
  if (o.channels > 0) {
    if (o.channelMult.length === 0) fail('channelMult must not be empty');
    if (o.attentionLevels.length !== o.channelMult.length) fail('attentionLevels needs one entry per level');
    for (const m of o.channelMult) {
      const ch = o.channels * m;
      if (ch % groups !== 0) fail(`groups ${groups} must divide ${ch} channels`);
      if (ch % o.heads !== 0) fail(`heads ${o.heads} must divide ${ch} channels`);
    }
    if (o.channels % 2 !== 0) fail('channels must be even');
  }
  if (o.vaeChannels > 0) {
    // Three ×2 upsamplings between four levels give the VAE's ×8.
    if (o.vaeChannelMult.length !== 4) fail('vaeChannelMult needs exactly 4 levels');
    const vaeGroups = Math.min(32, o.vaeChannels);
    for (const m of o.vaeChannelMult) {
      if ((o.vaeChannels * m) % vaeGroups !== 0)
        fail(`VAE channels ${o.vaeChannels * m} not divisible by ${vaeGroups}`);
    }
  }
  return o;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
