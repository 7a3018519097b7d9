import { ErrorCode, UserError } from '../../core/errors.ts';
import type { SamplerName } from '../../core/samplers.ts';
import type { NoiseGenerator, Scheduler, SchedulerConfig } from '../types.ts';
import {
  addNoiseByAlpha,
  checkSameLength,
  checkSteps,
  clipSample,
  DEFAULT_BETAS,
  type NoiseSchedule,
  notReady,
  readNoiseSchedule,
  type Thresholding,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
  thresholdSample,
  timestepOutOfRange,
} from './common.ts';
import { ConfigReader } from './config.ts';
import { f32, npArange, npLinspace, roundHalfEven } from './numeric.ts';

const NAME = 'DDIMScheduler';

/** diffusers' `DDIMScheduler`, stepped with `eta=0` (deterministic DDIM), as StableDiffusionPipeline does. */
export class DdimScheduler implements Scheduler {
  readonly name: SamplerName;
  readonly sigmas = null;
  readonly initNoiseSigma = 1.0;
  timesteps: readonly number[] = [];

  private readonly schedule: NoiseSchedule;
  private readonly finalAlphaCumprod: number;
  private readonly predictionType: 'epsilon' | 'sample' | 'v_prediction';
  private readonly spacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private readonly clipSample: boolean;
  private readonly clipSampleRange: number;
  private readonly thresholding: Thresholding | null;
  private numInferenceSteps: number | null = null;

  constructor(name: SamplerName, config: SchedulerConfig, overrides: SchedulerConfig = {}) {
    this.name = name;
    const cfg = new ConfigReader(NAME, config, overrides);
    this.schedule = readNoiseSchedule(cfg, DEFAULT_BETAS, { rescaleKey: true, zeroSnrPinsLast: false });
    this.clipSample = cfg.boolean('clip_sample', true);
    this.finalAlphaCumprod = cfg.boolean('set_alpha_to_one', true) ? 1.0 : this.schedule.alphasCumprod[0]!;
    this.stepsOffset = cfg.integer('steps_offset', 0);
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
    this.clipSampleRange = cfg.number('clip_sample_range', 1.0);
    this.spacing = cfg.choice('timestep_spacing', TIMESTEP_SPACINGS, 'leading');
  }

  /** The training noise schedule's cumulative alpha products (float32), for callers that need them. */
  get alphasCumprod(): Float32Array {
    return this.schedule.alphasCumprod;
  }

  setTimesteps(steps: number): void {
    checkSteps(NAME, steps);
    const n = this.schedule.numTrainTimesteps;
    if (steps > n) {
      throw new UserError(
        ErrorCode.InvalidRequest,
        `DDIM can take at most ${n} steps (asked for ${steps}).`,
        {
          context: { scheduler: NAME, steps },
        },
      );
    }
    this.numInferenceSteps = steps;
    if (this.spacing === 'linspace') {
      this.timesteps = npLinspace(0, n - 1, steps)
        .map(roundHalfEven)
        .reverse();
    } else if (this.spacing === 'leading') {
      const ratio = Math.floor(n / steps);
      this.timesteps = Array.from({ length: steps }, (_, i) => (steps - 1 - i) * ratio + this.stepsOffset);
    } else {
      this.timesteps = npArange(n, 0, -(n / steps)).map((t) => roundHalfEven(t) - 1);
    }
  }

  /** diffusers' DDIMScheduler has no `set_begin_index`: it steps by timestep, so a mid-schedule start needs nothing. */
  setBeginIndex(_index: number): void {}

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
    const ac = this.schedule.alphasCumprod;
    const prevTimestep = timestep - Math.floor(this.schedule.numTrainTimesteps / this.numInferenceSteps);
    const alphaProdT = ac[timestep];
    if (alphaProdT === undefined) throw timestepOutOfRange(NAME, timestep, ac.length);
    const alphaProdPrev = prevTimestep >= 0 ? ac[prevTimestep]! : this.finalAlphaCumprod;
    const betaProdT = f32(1 - alphaProdT);
    const sa = f32(Math.sqrt(alphaProdT));
    const sb = f32(Math.sqrt(betaProdT));
    const len = sample.length;
    const x0 = new Float32Array(len);
    // pred_epsilon is recomputed from the original prediction (use_clipped_model_output=False).
    let eps: Float32Array;
    if (this.predictionType === 'epsilon') {
      for (let i = 0; i < len; i++) x0[i] = f32(sample[i]! - f32(sb * modelOutput[i]!)) / sa;
      eps = modelOutput;
    } else if (this.predictionType === 'sample') {
      x0.set(modelOutput);
      eps = new Float32Array(len);
      for (let i = 0; i < len; i++) eps[i] = f32(sample[i]! - f32(sa * modelOutput[i]!)) / sb;
    } else {
      eps = new Float32Array(len);
      for (let i = 0; i < len; i++) {
        x0[i] = f32(sa * sample[i]!) - f32(sb * modelOutput[i]!);
        eps[i] = f32(sa * modelOutput[i]!) + f32(sb * sample[i]!);
      }
    }
    if (this.thresholding !== null) {
      thresholdSample(x0, Math.max(1, generators.length), this.thresholding);
    } else if (this.clipSample) {
      clipSample(x0, this.clipSampleRange);
    }
    // eta = 0: std_dev_t = 0 * variance ** 0.5 = 0, so the direction coefficient is sqrt(1 - alpha_prev).
    const dirCoeff = f32(Math.sqrt(f32(1 - alphaProdPrev)));
    const sap = f32(Math.sqrt(alphaProdPrev));
    // x0 is reused as the output buffer (each element is read before it is overwritten).
    for (let i = 0; i < len; i++) x0[i] = f32(sap * x0[i]!) + f32(dirCoeff * eps[i]!);
    return x0;
  }
}
