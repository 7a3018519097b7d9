import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { ErrorCode, UserError } from '../../core/errors.ts';
import { createSession, type ProviderOptions } from '../providers.ts';
import { describeVaeEncoder, type VaeEncoderModel } from '../session-roles.ts';
import { floatTensor } from '../tensors.ts';
import type { Scheduler } from '../types.ts';
import { invalid } from './errors.ts';
import type { LatentsContext, LatentsMode, StartLatents } from './parts.ts';
import type { SessionRunner } from './session.ts';

/**
 * Image-to-image start latents, what diffusers' `StableDiffusionImg2ImgPipeline` and
 * `StableDiffusionXLImg2ImgPipeline` (`requires_aesthetics_score=False`) do in `get_timesteps` and
 * `prepare_latents`: the strength picks the first kept timestep; the VAE encoder's mean and log-variance
 * give the latent distribution, sampled with image k's own generator (`latent_dist.sample(generator[k])`),
 * scaled by the VAE's `scaling_factor`; then generator k draws the start noise, which the scheduler's
 * `add_noise` mixes in at that timestep; any ancestral noise comes after, in the denoising loop.
 */

const f = Math.fround;

/** diffusers' default `strength` of both img2img pipelines. */
export const DEFAULT_STRENGTH = 0.8;

/**
 * `scheduler.order` of every sampler this project supports is 1 (PNDM with skipped PRK steps, DDIM,
 * Euler, Euler ancestral, DPM-Solver++ 2M, LCM), so `timesteps[t_start * order:]` is `timesteps[t_start:]`.
 */
const SCHEDULER_ORDER = 1;

/**
 * `get_timesteps(num_inference_steps, strength)`: the index of the first timestep run, after which
 * `set_begin_index` is called. Refuses a strength that leaves no step (diffusers would fail later).
 */
export function strengthStart(scheduler: Scheduler, steps: number, strength: number): number {
  const initTimestep = Math.min(Math.trunc(steps * strength), steps);
  if (initTimestep < 1) {
    throw invalid(
      `Strength ${strength} with ${steps} steps runs no denoising step: use a strength of at least ` +
        `${(1 / steps).toPrecision(3)} or more steps.`,
      { strength, steps },
    );
  }
  const tStart = Math.max(steps - initTimestep, 0);
  const first = tStart * SCHEDULER_ORDER;
  scheduler.setBeginIndex(first);
  return first;
}

/** Validates a request's strength (0 < s <= 1). */
export function checkStrength(strength: unknown): number {
  if (typeof strength !== 'number' || !Number.isFinite(strength) || strength <= 0 || strength > 1) {
    throw invalid(`Strength must be a number above 0 and at most 1, got ${String(strength)}.`, { strength });
  }
  return strength;
}

export interface VaeEncoder extends VaeEncoderModel {
  /** vae_encoder/config.json `scaling_factor` (falling back to the decoder's). */
  readonly scalingFactor: number;
}

/**
 * Opens `vae_encoder/model.onnx` of a model folder, on first use (text-to-image never needs it).
 * A folder without one cannot do image-to-image: that is the request's problem, said plainly.
 */
export async function openVaeEncoder(
  dir: string,
  options: ProviderOptions,
  fallbackScaling: number,
): Promise<VaeEncoder> {
  const file = path.join(dir, 'vae_encoder/model.onnx');
  const exists = await stat(file).then(
    (s) => s.isFile(),
    () => false,
  );
  if (!exists) {
    throw new UserError(
      ErrorCode.InvalidRequest,
      'This model has no VAE encoder (vae_encoder/model.onnx), so it cannot start from an image.',
      { context: { file } },
    );
  }
  let scalingFactor = fallbackScaling;
  try {
    const config = JSON.parse(await readFile(path.join(dir, 'vae_encoder/config.json'), 'utf8')) as unknown;
    const s = (config as { scaling_factor?: unknown } | null)?.scaling_factor;
    if (typeof s === 'number' && s > 0) scalingFactor = s;
  } catch {
    // No config beside the encoder: the decoder's scaling factor is the model's.
  }
  const session = await createSession(file, options, 'VAE encoder');
  try {
    return { ...describeVaeEncoder(file, session), scalingFactor };
  } catch (error) {
    await session.release();
    throw error;
  }
}

export interface InitImageInput {
  readonly encoder: VaeEncoder;
  readonly runner: SessionRunner;
  /** The preprocessed picture, planar [3, H, W] in [-1, 1] at the request's size. */
  readonly pixels: Float32Array;
  readonly strength: number;
}

/** The image-to-image mode for one request; `encodeMs` holds the VAE encoder's time once run. */
export function imageToImage(input: InitImageInput): LatentsMode & { encodeMs: number } {
  const mode = {
    encodeMs: 0,
    async prepareLatents(context: LatentsContext): Promise<StartLatents> {
      const { request, scheduler, generators, perImage } = context;
      const { encoder, runner, pixels } = input;
      const firstStep = strengthStart(scheduler, request.steps, input.strength);
      const timestep = scheduler.timesteps[firstStep]!;

      // One encoder run serves the batch: every image starts from the same picture.
      const t0 = performance.now();
      const feeds = {
        [encoder.sample.name]: floatTensor(encoder.sample.type, pixels, [
          1,
          3,
          request.height,
          request.width,
        ]),
      };
      const out = await runner.run(encoder.session, feeds, encoder.output, 'VAE encoder');
      mode.encodeMs = performance.now() - t0;
      const expected = encoder.kind === 'parameters' ? 2 * perImage : perImage;
      if (out.length !== expected) {
        throw invalid(`The VAE encoder returned ${out.length} values; expected ${expected}.`);
      }
      let std: Float32Array | null = null;
      if (encoder.kind === 'parameters') {
        // DiagonalGaussianDistribution: std = exp(0.5 * clamp(logvar, -30, 20)), float32.
        std = new Float32Array(perImage);
        for (let i = 0; i < perImage; i++) {
          const logvar = Math.min(Math.max(out[perImage + i]!, -30), 20);
          std[i] = f(Math.exp(f(0.5 * logvar)));
        }
      }
      const sf = f(encoder.scalingFactor);
      const batch = request.prompts.length;
      const init = new Float32Array(batch * perImage);
      for (let k = 0; k < batch; k++) {
        const off = k * perImage;
        if (std === null) {
          for (let i = 0; i < perImage; i++) init[off + i] = f(sf * out[i]!);
          continue;
        }
        const draw = generators[k]!.randn(perImage);
        for (let i = 0; i < perImage; i++) init[off + i] = f(sf * f(out[i]! + f(std[i]! * draw[i]!)));
      }
      const noise = new Float32Array(batch * perImage);
      for (let k = 0; k < batch; k++) noise.set(generators[k]!.randn(perImage), k * perImage);
      return { latents: scheduler.addNoise(init, noise, timestep), firstStep };
    },
  };
  return mode;
}
