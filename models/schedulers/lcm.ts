import { ErrorCode, UserError } from '../../core/errors.ts';
import type { SamplerName } from '../../core/samplers.ts';
import type { NoiseGenerator, Scheduler, SchedulerConfig } from '../types.ts';
import {
  addNoiseByAlpha,
  checkSameLength,
  checkSteps,
  clipSample,
  drawNoise,
  type NoiseSchedule,
  notReady,
  readNoiseSchedule,
  scratch,
  startIndex,
  type Thresholding,
  thresholdSample,
  timestepOutOfRange,
} from './common.ts';
import { ConfigReader } from './config.ts';
import { f32, npLinspace } from './numeric.ts';

const NAME = 'LCMScheduler';

/**
 * diffusers' `LCMScheduler` (latent consistency models): each step jumps to the consistency-function
 * estimate of x0, then re-noises it to the next timestep with fresh per-image noise (not on the last step).
 */
export class LcmScheduler implements Scheduler {
  readonly name: SamplerName;
  readonly sigmas = null;
  readonly initNoiseSigma = 1.0;
  timesteps: readonly number[] = [];

  private readonly schedule: NoiseSchedule;
  private readonly finalAlphaCumprod: number;
  private readonly originalSteps: number;
  private readonly clipSample: boolean;
  private readonly clipSampleRange: number;
  private readonly predictionType: 'epsilon' | 'sample' | 'v_prediction';
  private readonly thresholding: Thresholding | null;
  private readonly timestepScaling: number;
  private numInferenceSteps: number | null = null;
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;
  private noise: Float32Array | null = null;

  constructor(name: SamplerName, config: SchedulerConfig, overrides: SchedulerConfig = {}) {
    this.name = name;
    const cfg = new ConfigReader(NAME, config, overrides);
    this.schedule = readNoiseSchedule(
      cfg,
      { betaStart: 0.00085, betaEnd: 0.012, betaSchedule: 'scaled_linear' },
      { rescaleKey: true, zeroSnrPinsLast: false },
    );
    this.originalSteps = cfg.integer('original_inference_steps', 50);
    this.clipSample = cfg.boolean('clip_sample', false);
    this.clipSampleRange = cfg.number('clip_sample_range', 1.0);
    this.finalAlphaCumprod = cfg.boolean('set_alpha_to_one', true) ? 1.0 : this.schedule.alphasCumprod[0]!;
    this.predictionType = cfg.choice(
      'prediction_type',
      ['epsilon', 'sample', 'v_prediction'] as const,
      'epsilon',
    );
    this.thresholding = cfg.boolean('thresholding', false)
      ? {
          ratio: cfg.number('dynamic_thresholding_ratio', 0.995),
          maxValue: cfg.number('sample_max_value', 1.0),
        }
      : null;
    this.timestepScaling = cfg.number('timestep_scaling', 10.0);
  }

  /** The training noise schedule's cumulative alpha products (float32), for callers that need them. */
  get alphasCumprod(): Float32Array {
    return this.schedule.alphasCumprod;
  }

  setTimesteps(steps: number): void {
    checkSteps(NAME, steps);
    const n = this.schedule.numTrainTimesteps;
    const original = this.originalSteps;
    if (original > n || original < 1) {
      throw new UserError(ErrorCode.InvalidRequest, `LCM original_inference_steps must be 1..${n}.`, {
        context: { scheduler: NAME, original },
      });
    }
    if (steps > n || steps > original) {
      throw new UserError(
        ErrorCode.InvalidRequest,
        `LCM can take at most ${Math.min(n, original)} steps (asked for ${steps}).`,
        { context: { scheduler: NAME, steps } },
      );
    }
    // The distillation schedule: k-1, 2k-1, ..., original*k - 1 (strength 1), then every
    // (original/steps)-th of it from the top.
    const k = Math.floor(n / original);
    const origin = Array.from({ length: original }, (_, i) => (original - i) * k - 1);
    const indices = npLinspace(0, origin.length, steps, false).map(Math.floor);
    this.timesteps = indices.map((i) => origin[i]!);
    this.numInferenceSteps = steps;
    this.stepIndex = null;
    this.beginIndex = null;
  }

  setBeginIndex(index: number): void {
    this.beginIndex = index;
  }

  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    return addNoiseByAlpha(NAME, this.schedule.alphasCumprod, original, noise, timestep);
  }

  scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    generators: readonly NoiseGenerator[],
  ): Float32Array {
    if (this.numInferenceSteps === null) throw notReady(NAME);
    checkSameLength(NAME, modelOutput, sample);
    if (this.stepIndex === null) {
      this.stepIndex = startIndex(NAME, this.beginIndex, this.timesteps, timestep, 'throw');
    }
    const ac = this.schedule.alphasCumprod;
    const prevIndex = this.stepIndex + 1;
    const prevTimestep = prevIndex < this.timesteps.length ? this.timesteps[prevIndex]! : timestep;
    const alphaProdT = ac[timestep];
    if (alphaProdT === undefined) throw timestepOutOfRange(NAME, timestep, ac.length);
    const alphaProdPrev = prevTimestep >= 0 ? ac[prevTimestep]! : this.finalAlphaCumprod;
    const betaProdT = f32(1 - alphaProdT);
    const betaProdPrev = f32(1 - alphaProdPrev);

    // get_scalings_for_boundary_condition_discrete, with the timestep a torch int64 tensor: its
    // product with the float scaling is a float32 tensor.
    const scaled = f32(timestep * f32(this.timestepScaling));
    const scaledSq = f32(scaled * scaled);
    const cSkip = f32(0.25 / f32(scaledSq + 0.25));
    const cOut = f32(scaled / f32(Math.sqrt(f32(scaledSq + 0.25))));

    const len = sample.length;
    const sa = f32(Math.sqrt(alphaProdT));
    const sb = f32(Math.sqrt(betaProdT));
    const out = new Float32Array(len);
    // out first holds the x0 prediction, then the denoised sample, then prev_sample.
    if (this.predictionType === 'epsilon') {
      for (let i = 0; i < len; i++) out[i] = f32(sample[i]! - f32(sb * modelOutput[i]!)) / sa;
    } else if (this.predictionType === 'sample') {
      out.set(modelOutput);
    } else {
      for (let i = 0; i < len; i++) out[i] = f32(sa * sample[i]!) - f32(sb * modelOutput[i]!);
    }
    if (this.thresholding !== null) thresholdSample(out, Math.max(1, generators.length), this.thresholding);
    else if (this.clipSample) clipSample(out, this.clipSampleRange);
    for (let i = 0; i < len; i++) out[i] = f32(cOut * out[i]!) + f32(cSkip * sample[i]!);

    if (this.stepIndex !== this.numInferenceSteps - 1) {
      this.noise = scratch(this.noise, len);
      const noise = drawNoise(NAME, generators, len, this.noise);
      const sap = f32(Math.sqrt(alphaProdPrev));
      const sbp = f32(Math.sqrt(betaProdPrev));
      for (let i = 0; i < len; i++) out[i] = f32(sap * out[i]!) + f32(sbp * noise[i]!);
    }
    this.stepIndex += 1;
    return out;
  }
}
