import type { SamplerName } from '../../core/samplers.ts';
import type { NoiseGenerator, Scheduler, SchedulerConfig } from '../types.ts';
import {
  addNoiseBySigma,
  addNoiseIndex,
  checkSameLength,
  checkSteps,
  DEFAULT_BETAS,
  type NoiseSchedule,
  notReady,
  readNoiseSchedule,
  sigmaTable,
  startIndex,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
} from './common.ts';
import { ConfigReader } from './config.ts';
import {
  exponentialSigmas,
  f32,
  karrasSigmas,
  logF32,
  npArange,
  npInterpIndex,
  npLinspace,
  roundHalfEven,
  sigmaToT,
  torchLinspaceF32,
} from './numeric.ts';

/** `timestep_spacing` → float32 timesteps, as the Euler-family `set_timesteps` computes them. */
export function eulerTimesteps(
  spacing: TimestepSpacing,
  numTrainTimesteps: number,
  steps: number,
  stepsOffset: number,
): number[] {
  if (spacing === 'linspace')
    return npLinspace(0, numTrainTimesteps - 1, steps)
      .map(f32)
      .reverse();
  if (spacing === 'leading') {
    const ratio = Math.floor(numTrainTimesteps / steps);
    return Array.from({ length: steps }, (_, i) => f32((steps - 1 - i) * ratio) + stepsOffset);
  }
  return npArange(numTrainTimesteps, 0, -(numTrainTimesteps / steps)).map((t) => f32(roundHalfEven(t)) - 1);
}

/** `init_noise_sigma` of the Euler family: max sigma for linspace/trailing, else sqrt(max² + 1). */
export function eulerInitNoiseSigma(sigmas: readonly number[], spacing: TimestepSpacing): number {
  let max = Number.NEGATIVE_INFINITY;
  for (const s of sigmas) if (s > max) max = s;
  if (spacing === 'linspace' || spacing === 'trailing') return max;
  return f32(Math.sqrt(f32(f32(max * max) + 1)));
}

/** Euler-family `scale_model_input`: sample / sqrt(sigma² + 1), in float32. */
export function scaleBySigma(sample: Float32Array, sigma: number): Float32Array {
  const d = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
  const out = new Float32Array(sample.length);
  for (let i = 0; i < sample.length; i++) out[i] = sample[i]! / d;
  return out;
}

const NAME = 'EulerDiscreteScheduler';
const PREDICTION_TYPES = ['epsilon', 'v_prediction', 'sample', 'original_sample'] as const;

/** diffusers' `EulerDiscreteScheduler` (Karras et al. 2022 Algorithm 2 with s_churn = 0). */
export class EulerScheduler implements Scheduler {
  readonly name: SamplerName;
  timesteps: readonly number[] = [];
  sigmas: readonly number[] | null = null;
  initNoiseSigma: number;

  private readonly schedule: NoiseSchedule;
  private readonly sigmaTable: Float32Array;
  private readonly logSigmas: Float32Array;
  private readonly predictionType: (typeof PREDICTION_TYPES)[number];
  private readonly interpolation: 'linear' | 'log_linear';
  private readonly sigmaKind: 'plain' | 'karras' | 'exponential';
  private readonly sigmaMin: number | null;
  private readonly sigmaMax: number | null;
  private readonly spacing: TimestepSpacing;
  private readonly continuousV: boolean;
  private readonly stepsOffset: number;
  private readonly finalSigmaMin: boolean;
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;

  constructor(name: SamplerName, config: SchedulerConfig, overrides: SchedulerConfig = {}) {
    this.name = name;
    const cfg = new ConfigReader(NAME, config, overrides);
    this.schedule = readNoiseSchedule(cfg, DEFAULT_BETAS, { rescaleKey: true, zeroSnrPinsLast: true });
    this.predictionType = cfg.choice('prediction_type', PREDICTION_TYPES, 'epsilon');
    this.interpolation = cfg.choice('interpolation_type', ['linear', 'log_linear'] as const, 'linear');
    const karras = cfg.boolean('use_karras_sigmas', false);
    const exponential = cfg.boolean('use_exponential_sigmas', false);
    const beta = cfg.boolean('use_beta_sigmas', false);
    if (Number(karras) + Number(exponential) + Number(beta) > 1) {
      throw cfg.unsupported('more than one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas');
    }
    if (beta) throw cfg.unsupported('use_beta_sigmas (needs scipy.stats.beta.ppf)');
    this.sigmaKind = karras ? 'karras' : exponential ? 'exponential' : 'plain';
    this.sigmaMin = cfg.nullableNumber('sigma_min');
    this.sigmaMax = cfg.nullableNumber('sigma_max');
    this.spacing = cfg.choice('timestep_spacing', TIMESTEP_SPACINGS, 'linspace');
    const timestepType = cfg.choice('timestep_type', ['discrete', 'continuous'] as const, 'discrete');
    this.continuousV = timestepType === 'continuous' && this.predictionType === 'v_prediction';
    this.stepsOffset = cfg.integer('steps_offset', 0);
    this.finalSigmaMin =
      cfg.choice('final_sigmas_type', ['zero', 'sigma_min'] as const, 'zero') === 'sigma_min';
    this.sigmaTable = sigmaTable(this.schedule.alphasCumprod);
    this.logSigmas = logF32(this.sigmaTable);
    // Before set_timesteps, diffusers' sigmas are the full training table (plus a zero).
    let max = 0;
    for (const s of this.sigmaTable) max = Math.max(max, s);
    this.initNoiseSigma = eulerInitNoiseSigma([max], this.spacing);
  }

  setTimesteps(steps: number): void {
    checkSteps(NAME, steps);
    const n = this.schedule.numTrainTimesteps;
    let timesteps = eulerTimesteps(this.spacing, n, steps, this.stepsOffset);
    const table = this.sigmaTable;
    let sigmas: number[];
    if (this.interpolation === 'linear') {
      sigmas = timesteps.map((t) => npInterpIndex(t, table));
    } else {
      // torch.linspace(log(sigma_max), log(sigma_min), steps + 1).exp(), all float32.
      const logs = torchLinspaceF32(Math.log(table[n - 1]!), Math.log(table[0]!), steps + 1);
      sigmas = Array.from(logs, (v) => f32(Math.exp(v)));
    }
    if (this.sigmaKind !== 'plain') {
      const sMin = this.sigmaMin ?? sigmas[sigmas.length - 1]!;
      const sMax = this.sigmaMax ?? sigmas[0]!;
      sigmas =
        this.sigmaKind === 'karras' ? karrasSigmas(sMin, sMax, steps) : exponentialSigmas(sMin, sMax, steps);
      timesteps = sigmas.map((s) => f32(sigmaToT(s, this.logSigmas)));
    }
    const a0 = this.schedule.alphasCumprod[0]!;
    const last = this.finalSigmaMin ? f32(Math.sqrt(f32(f32(1 - a0) / a0))) : 0;
    const finalSigmas = [...sigmas, last].map(f32);
    this.sigmas = finalSigmas;
    this.timesteps = this.continuousV
      ? finalSigmas.slice(0, -1).map((s) => f32(0.25 * f32(Math.log(s))))
      : timesteps;
    this.initNoiseSigma = eulerInitNoiseSigma(finalSigmas, this.spacing);
    this.stepIndex = null;
    this.beginIndex = null;
  }

  setBeginIndex(index: number): void {
    this.beginIndex = index;
  }

  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    if (this.sigmas === null) throw notReady(NAME);
    const index = addNoiseIndex(NAME, this.beginIndex, this.stepIndex, this.timesteps, timestep, 'throw');
    return addNoiseBySigma(original, noise, this.sigmas[index]!);
  }

  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    if (this.sigmas === null) throw notReady(NAME);
    if (this.stepIndex === null) {
      this.stepIndex = startIndex(NAME, this.beginIndex, this.timesteps, timestep, 'throw');
    }
    return scaleBySigma(sample, this.sigmas[this.stepIndex]!);
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    _generators: readonly NoiseGenerator[],
  ): Float32Array {
    const sigmas = this.sigmas;
    if (sigmas === null) throw notReady(NAME);
    checkSameLength(NAME, modelOutput, sample);
    if (this.stepIndex === null) {
      this.stepIndex = startIndex(NAME, this.beginIndex, this.timesteps, timestep, 'throw');
    }
    const sigma = sigmas[this.stepIndex]!;
    // s_churn = 0 → gamma = 0 → sigma_hat = sigma * (0 + 1) = sigma, and no noise is added.
    const sigmaHat = sigma;
    const dt = f32(sigmas[this.stepIndex + 1]! - sigmaHat);
    const len = sample.length;
    const out = new Float32Array(len);
    if (this.predictionType === 'epsilon') {
      for (let i = 0; i < len; i++) {
        const s = sample[i]!;
        const pred = f32(s - f32(sigmaHat * modelOutput[i]!));
        const derivative = f32(f32(s - pred) / sigmaHat);
        out[i] = s + f32(derivative * dt);
      }
    } else if (this.predictionType === 'v_prediction') {
      const c2 = f32(f32(sigma * sigma) + 1);
      const c1 = f32(-sigma / f32(Math.sqrt(c2)));
      for (let i = 0; i < len; i++) {
        const s = sample[i]!;
        const pred = f32(f32(modelOutput[i]! * c1) + f32(s / c2));
        const derivative = f32(f32(s - pred) / sigmaHat);
        out[i] = s + f32(derivative * dt);
      }
    } else {
      for (let i = 0; i < len; i++) {
        const s = sample[i]!;
        const derivative = f32(f32(s - modelOutput[i]!) / sigmaHat);
        out[i] = s + f32(derivative * dt);
      }
    }
    this.stepIndex += 1;
    return out;
  }
}
