import type { GeneratorKind, SamplerName } from '../core/samplers.ts';

/**
 * The engine interface between models/ and queue/: load once, generate many batches, close.
 * The worker depends only on this; tests may pass any implementation (e.g. a fast fake).
 */

/** One batch. Image k is (prompts[k], seeds[k]) and depends on nothing else in the batch. */
export interface GenerateRequest {
  readonly prompts: readonly string[];
  /** Empty string: no negative prompt (the unconditional half uses the empty prompt, as diffusers does). */
  readonly negative: string;
  /**
   * True when `negative` was given even if empty (diffusers' `negative_prompt=""` rather than `None`).
   * Only SDXL tells them apart: with `force_zeros_for_empty_prompt`, no negative prompt means zero
   * unconditional embeddings, an explicit empty one is encoded. @defaultValue `false`
   */
  readonly negativeGiven?: boolean;
  readonly seeds: readonly number[];
  readonly scheduler: SamplerName;
  readonly steps: number;
  readonly guidance: number;
  readonly width: number;
  readonly height: number;
  /** Which torch generator the seeds reproduce. Default: the engine's configured one (cpu). */
  readonly generator?: GeneratorKind;
  /**
   * Image-to-image: the starting picture, an encoded PNG, JPEG or WebP file (at most 20 MiB and
   * 4096x4096 pixels), resized to width x height when its size differs. Absent: text-to-image.
   */
  readonly initImage?: Uint8Array;
  /**
   * Image-to-image only: how much of the schedule runs from the picture, above 0 and at most 1 (1 starts
   * from noise at the first timestep), as diffusers' `strength`. @defaultValue `0.8` (diffusers' default)
   */
  readonly strength?: number;
}

/** Interleaved 8-bit RGB, row-major, no padding: `data.length === width * height * 3`. */
export interface RgbImage {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

export interface StepProgress {
  /** 1-based step just finished. */
  readonly step: number;
  readonly total: number;
  readonly elapsedMs: number;
  /** Cheap latent→RGB projection of image `index` (a few ms); call only when a preview is wanted. */
  preview(index?: number): RgbImage;
  /**
   * Image `index` through the model's tiny autoencoder (TAESD) at full size: a real preview, at the cost
   * of one tiny-decoder run. Present only when the model folder has `vae_decoder_tiny/`.
   */
  decodedPreview?(index?: number): Promise<RgbImage>;
}

export interface GenerateOptions {
  /** Called after every denoising step; awaited, so keep it fast (or don't await inside). */
  readonly onStep?: (progress: StepProgress) => void | Promise<void>;
  /** Checked between steps; aborting rejects with a CodedError of code E_CANCELLED. */
  readonly signal?: AbortSignal;
  /**
   * For engines that make decoded (TAESD) previews themselves, such as the engine thread: the least time
   * between two of them, since each costs a decode (seconds on a CPU). 0: none. Absent: every step.
   */
  readonly decodedPreviewEveryMs?: number;
}

export interface GeneratedImage extends RgbImage {
  readonly prompt: string;
  readonly seed: number;
  /** Set only when the safety checker ran. */
  readonly nsfw?: boolean;
}

export interface GenerateTimings {
  readonly tokenizeMs: number;
  readonly textEncodeMs: number;
  /** One entry per denoising step (UNet + scheduler + guidance). */
  readonly stepMs: readonly number[];
  readonly decodeMs: number;
  /** Image-to-image: the VAE encoder's run. */
  readonly encodeImageMs?: number;
  readonly safetyMs?: number;
  readonly totalMs: number;
}

export interface GenerateResult {
  readonly images: readonly GeneratedImage[];
  /** Per image: tokens dropped because the prompt exceeded CLIP's 77-token window (0 = none). */
  readonly truncatedTokens: readonly number[];
  readonly negativeTruncatedTokens: number;
  readonly generator: GeneratorKind;
  readonly timings: GenerateTimings;
}

/**
 * Generation settings that fit a model (models/defaults.ts): from its folder's `imagine.json`, else known
 * by family and scheduler config. For callers to use where the user gave no value; settings override them.
 */
export interface ModelDefaults {
  readonly steps: number;
  readonly guidance: number;
  readonly width: number;
  readonly height: number;
  /** The folder's own scheduler, when this engine has it; absent: the caller's choice. */
  readonly scheduler?: SamplerName;
  /** Where they came from: the folder's imagine.json (over the known ones) or the family rules alone. */
  readonly source: 'imagine.json' | 'family';
  /** Which rule gave them, for people: e.g. "SD-Turbo (EulerAncestral scheduler with trailing spacing)". */
  readonly reason: string;
}

export interface ModelInfo {
  /** Folder name or hub repo id. */
  readonly name: string;
  readonly dir: string;
  /** True for the built-in demo model: its images are synthetic, not real Stable Diffusion output. */
  readonly demo: boolean;
  readonly dtype: 'float32' | 'float16';
  readonly executionProvider: string;
  readonly hasSafetyChecker: boolean;
  /** The Stable Diffusion family the loader recognised (absent for engines that are not a model). */
  readonly family?: 'sd1' | 'sd2' | 'sdxl';
  /** Defaults that fit this model (absent for engines that are not a model folder). */
  readonly defaults?: ModelDefaults;
}

export interface Engine {
  readonly info: ModelInfo;
  generate(request: GenerateRequest, options?: GenerateOptions): Promise<GenerateResult>;
  /** Releases every onnxruntime session. The engine is unusable afterwards. */
  close(): Promise<void>;
}
