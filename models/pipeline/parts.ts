import type { GenerateRequest } from '../engine.ts';
import type { IoSpec } from '../loader.ts';
import type { FloatElement } from '../tensors.ts';
import type { NoiseGenerator, Scheduler } from '../types.ts';

/**
 * The two seams of the pipeline, as diffusers splits its pipelines: a model family turns prompts into
 * UNet conditioning (`encodePrompt`), a mode makes the start latents (`prepareLatents`); the denoising
 * loop (denoise.ts) is shared. A new family or mode is a new file implementing one of these.
 *
 * Families: SD 1.x and 2.x share sd1.ts (2.x differs only in tokenizer padding and scheduler config);
 * SDXL's encodePrompt (sdxl.ts) runs two text encoders and returns `text_embeds` (pooled) and `time_ids`
 * as extra UNet inputs beside `encoder_hidden_states`. Modes: text-to-image (txt2img.ts) starts from
 * scaled noise at the first timestep; image-to-image (img2img.ts) VAE-encodes the picture, samples it
 * with generator k (drawn before the noise), and adds noise at the strength's first timestep.
 */

/** A UNet input that stays the same at every step, one row per UNet batch row. */
export interface UnetConstantInput {
  readonly spec: IoSpec & { readonly type: FloatElement };
  /** `rows` rows of `rowShape`, row-major. */
  readonly data: Float32Array;
  /** Shape of one row, without the batch dimension (e.g. [77, 768] for CLIP hidden states). */
  readonly rowShape: readonly number[];
}

export interface PromptConditioning {
  /**
   * UNet inputs in diffusers' batch layout: [uncond x B, cond x B] with classifier-free guidance,
   * [cond x B] without.
   */
  readonly unetInputs: readonly UnetConstantInput[];
  /** Per prompt: tokens dropped beyond the text encoder's window. */
  readonly truncatedTokens: readonly number[];
  /** Tokens dropped from the negative prompt; 0 when guidance is off (it is not encoded). */
  readonly negativeTruncatedTokens: number;
  readonly tokenizeMs: number;
  readonly textEncodeMs: number;
}

/** A model family's text conditioning (SD 1.x/2.x: one CLIP encoder; SDXL: two). */
export interface ModelFamily {
  encodePrompt(request: GenerateRequest, cfg: boolean): Promise<PromptConditioning>;
}

export interface LatentsContext {
  readonly request: GenerateRequest;
  /** Already set to the request's steps. */
  readonly scheduler: Scheduler;
  /** generators[k] belongs to image k; every draw for image k comes from it, in diffusers' order. */
  readonly generators: readonly NoiseGenerator[];
  /** Latent values of one image: channels x height x width. */
  readonly perImage: number;
}

export interface StartLatents {
  /** Image-major [B, C, h, w]. */
  readonly latents: Float32Array;
  /** Index into `scheduler.timesteps` of the first step run (0 for text-to-image). */
  readonly firstStep: number;
}

/** A generation mode's start latents (text-to-image: scaled noise; image-to-image: the noised picture). */
export interface LatentsMode {
  prepareLatents(context: LatentsContext): StartLatents | Promise<StartLatents>;
}
