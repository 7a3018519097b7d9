import { CodedError } from '../../core/errors.ts';
import type { GenerateOptions, GenerateRequest, RgbImage } from '../engine.ts';
import { latentPreview } from '../image.ts';
import { createScheduler, pipelineSchedulerConfig } from '../schedulers/index.ts';
import type { NoiseGenerator, Scheduler, SchedulerConfig } from '../types.ts';
import { cancelled, invalid } from './errors.ts';
import type { SessionRunner } from './session.ts';
import { type UnetRun, unsupportedSizeError } from './unet.ts';

/**
 * The denoising loop every family and mode shares, diffusers' `__call__` steps 5-7: scale the input,
 * run the UNet on [uncond..., cond...] in one batch, combine with classifier-free guidance in float32,
 * step the scheduler with the per-image generators, report progress, stop on cancel.
 */

const f = Math.fround;

/** The request's scheduler, set to its steps; a sampler that cannot run that many steps is the user's error. */
export function pipelineScheduler(request: GenerateRequest, config: SchedulerConfig): Scheduler {
  try {
    const scheduler = createScheduler(request.scheduler, pipelineSchedulerConfig(request.scheduler, config));
    scheduler.setTimesteps(request.steps);
    return scheduler;
  } catch (error) {
    if (error instanceof CodedError) throw error;
    throw invalid(
      `Sampler ${request.scheduler} cannot run ${request.steps} steps: ${(error as Error).message}`,
    );
  }
}

export interface DenoiseInput extends GenerateOptions {
  readonly request: GenerateRequest;
  readonly scheduler: Scheduler;
  readonly generators: readonly NoiseGenerator[];
  readonly latents: Float32Array;
  /** Index into `scheduler.timesteps` of the first step run (image-to-image skips the first ones). */
  readonly firstStep?: number;
  readonly runUnet: UnetRun;
  /** Counts session time, so each step's UNet share can be told apart from the loop's own work. */
  readonly runner: SessionRunner;
  /** Classifier-free guidance: the UNet batch is [uncond x B, cond x B]. */
  readonly cfg: boolean;
  readonly latentShape: { readonly channels: number; readonly height: number; readonly width: number };
  /** When the generation began (performance.now()), for progress' elapsed time. */
  readonly startedAt: number;
  /** Decodes one image's latents [C,h,w] (noise-scaled as previews are) with the tiny decoder, when the model has one. */
  readonly decodePreview?: (latents: Float32Array) => Promise<RgbImage>;
}

export interface DenoiseResult {
  readonly latents: Float32Array;
  readonly stepMs: readonly number[];
  readonly unetRunMs: readonly number[];
}

export async function denoise(input: DenoiseInput): Promise<DenoiseResult> {
  const { request, scheduler, generators, runUnet, runner, cfg, signal, onStep } = input;
  const { channels, height: lh, width: lw } = input.latentShape;
  const batch = request.prompts.length;
  const perImage = channels * lh * lw;
  let latents = input.latents;
  const timesteps = scheduler.timesteps;
  const first = input.firstStep ?? 0;
  const total = timesteps.length - first;
  const stepMs: number[] = [];
  const unetRunMs: number[] = [];
  const g = f(request.guidance);
  const sigmas = scheduler.sigmas;
  const veSpace = scheduler.initNoiseSigma > 1;
  const cfgInput = new Float32Array(cfg ? 2 * batch * perImage : 0);
  for (let i = first; i < timesteps.length; i++) {
    if (signal?.aborted) throw cancelled();
    const stepStart = performance.now();
    const t = timesteps[i]!;
    const scaled = scheduler.scaleModelInput(latents, t);
    let unetInput = scaled;
    if (cfg) {
      // Reused across steps: onnxruntime reads CPU inputs in place and is done with them once run resolves.
      unetInput = cfgInput;
      unetInput.set(scaled, 0);
      unetInput.set(scaled, scaled.length);
    }
    const runBefore = runner.totalMs;
    let out: Float32Array;
    try {
      out = await runUnet(unetInput, t, i);
    } catch (error) {
      throw i === first ? unsupportedSizeError(error, request.width, request.height) : error;
    }
    unetRunMs.push(runner.totalMs - runBefore);
    let noisePred = out;
    if (cfg) {
      const n = batch * perImage;
      noisePred = new Float32Array(n);
      for (let j = 0; j < n; j++) {
        const u = out[j]!;
        noisePred[j] = f(u + f(g * f(out[n + j]! - u)));
      }
    }
    latents = scheduler.step(noisePred, t, latents, generators);
    stepMs.push(performance.now() - stepStart);
    if (onStep !== undefined) {
      const current = latents;
      // Euler-family latents live in sigma-scaled (VE) space (init_noise_sigma > 1): after step i they
      // carry noise at sigmas[i + 1], so scale by 1/sqrt(sigma^2 + 1) as scale_model_input does.
      const sigma = veSpace && sigmas !== null ? (sigmas[i + 1] ?? 0) : 0;
      const noiseScale = 1 / Math.sqrt(sigma * sigma + 1);
      const checkIndex = (index: number): void => {
        if (!Number.isInteger(index) || index < 0 || index >= batch) {
          throw new RangeError(`preview index ${index} is outside 0..${batch - 1}`);
        }
      };
      const decodePreview = input.decodePreview;
      await onStep({
        step: i - first + 1,
        total,
        elapsedMs: performance.now() - input.startedAt,
        preview: (index = 0): RgbImage => {
          checkIndex(index);
          return latentPreview(current, index, channels, lw, lh, noiseScale);
        },
        ...(decodePreview === undefined
          ? {}
          : {
              decodedPreview: (index = 0): Promise<RgbImage> => {
                checkIndex(index);
                const one = new Float32Array(perImage);
                const off = index * perImage;
                for (let j = 0; j < perImage; j++) one[j] = f(current[off + j]! * noiseScale);
                return decodePreview(one);
              },
            }),
      });
    }
  }
  if (signal?.aborted) throw cancelled();
  return { latents, stepMs, unetRunMs };
}
