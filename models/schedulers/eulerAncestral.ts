import type { SamplerName } from '../../core/samplers.ts';
import type { NoiseGenerator, Scheduler, SchedulerConfig } from '../types.ts';
import {
  addNoiseBySigma,
  addNoiseIndex,
  checkSameLength,
  checkSteps,
  DEFAULT_BETAS,
  drawNoise,
  type NoiseSchedule,
  notReady,
  readNoiseSchedule,
  scratch,
  sigmaTable,
  startIndex,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
} from './common.ts';
import { ConfigReader } from './config.ts';
import { eulerInitNoiseSigma, eulerTimesteps, scaleBySigma } from './euler.ts';
import { f32, npInterpIndex } from './numeric.ts';

const NAME = 'EulerAncestralDiscreteScheduler';

/**
 * diffusers' `EulerAncestralDiscreteScheduler`: an Euler step down to sigma_down, then fresh noise
 * scaled by sigma_up, drawn from each image's own generator at every step.
 */
export class EulerAncestralScheduler implements Scheduler {
  readonly name: SamplerName;
  timesteps: readonly number[] = [];
  sigmas: readonly number[] | null = null;
  initNoiseSigma: number;

  private readonly schedule: NoiseSchedule;
  private readonly sigmaTable: Float32Array;
  private readonly predictionType: 'epsilon' | 'v_prediction';
  private readonly spacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;
  private noise: Float32Array | null = null;

  constructor(name: SamplerName, config: SchedulerConfig, overrides: SchedulerConfig = {}) {
    this.name = name;
    const cfg = new ConfigReader(NAME, config, overrides);
    this.schedule = readNoiseSchedule(cfg, DEFAULT_BETAS, { rescaleKey: true, zeroSnrPinsLast: true });
    const prediction = cfg.choice(
      'prediction_type',
      ['epsilon', 'v_prediction', 'sample'] as const,
      'epsilon',
    );
    if (prediction === 'sample') throw cfg.unsupported('prediction_type "sample"');
    this.predictionType = prediction;
    this.spacing = cfg.choice('timestep_spacing', TIMESTEP_SPACINGS, 'linspace');
    this.stepsOffset = cfg.integer('steps_offset', 0);
    this.sigmaTable = sigmaTable(this.schedule.alphasCumprod);
    let max = 0;
    for (const s of this.sigmaTable) max = Math.max(max, s);
    this.initNoiseSigma = eulerInitNoiseSigma([max], this.spacing);
  }

  setTimesteps(steps: number): void {
    checkSteps(NAME, steps);
    const timesteps = eulerTimesteps(this.spacing, this.schedule.numTrainTimesteps, steps, this.stepsOffset);
    const sigmas = [...timesteps.map((t) => npInterpIndex(t, this.sigmaTable)), 0].map(f32);
    this.timesteps = timesteps;
    this.sigmas = sigmas;
    this.initNoiseSigma = eulerInitNoiseSigma(sigmas, this.spacing);
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
    generators: readonly NoiseGenerator[],
  ): Float32Array {
    const sigmas = this.sigmas;
    if (sigmas === null) throw notReady(NAME);
    checkSameLength(NAME, modelOutput, sample);
    if (this.stepIndex === null) {
      this.stepIndex = startIndex(NAME, this.beginIndex, this.timesteps, timestep, 'throw');
    }
    const sigma = sigmas[this.stepIndex]!;
    const sigmaTo = sigmas[this.stepIndex + 1]!;
    const fromSq = f32(sigma * sigma);
    const toSq = f32(sigmaTo * sigmaTo);
    const sigmaUp = f32(Math.sqrt(f32(f32(toSq * f32(fromSq - toSq)) / fromSq)));
    const sigmaDown = f32(Math.sqrt(f32(toSq - f32(sigmaUp * sigmaUp))));
    const dt = f32(sigmaDown - sigma);
    const len = sample.length;
    // The noise is drawn on every step, also the last (sigma_up = 0), as diffusers does.
    this.noise = scratch(this.noise, len);
    const noise = drawNoise(NAME, generators, len, this.noise);
    const out = new Float32Array(len);
    if (this.predictionType === 'epsilon') {
      for (let i = 0; i < len; i++) {
        const s = sample[i]!;
        const pred = f32(s - f32(sigma * modelOutput[i]!));
        const derivative = f32(f32(s - pred) / sigma);
        out[i] = f32(s + f32(derivative * dt)) + f32(noise[i]! * sigmaUp);
      }
    } else {
      const c2 = f32(f32(sigma * sigma) + 1);
      const c1 = f32(-sigma / f32(Math.sqrt(c2)));
      for (let i = 0; i < len; i++) {
        const s = sample[i]!;
        const pred = f32(f32(modelOutput[i]! * c1) + f32(s / c2));
        const derivative = f32(f32(s - pred) / sigma);
        out[i] = f32(s + f32(derivative * dt)) + f32(noise[i]! * sigmaUp);
      }
    }
    this.stepIndex += 1;
    return out;
  }
}
