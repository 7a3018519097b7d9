import type { SamplerName } from '../../core/samplers.ts';
import type { NoiseGenerator, Scheduler, SchedulerConfig } from '../types.ts';
import {
  addNoiseByAlpha,
  checkSameLength,
  checkSteps,
  DEFAULT_BETAS,
  type NoiseSchedule,
  notReady,
  readNoiseSchedule,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
  timestepOutOfRange,
} from './common.ts';
import { ConfigReader } from './config.ts';
import { f32, npArange, npLinspace, roundHalfEven } from './numeric.ts';

const NAME = 'PNDMScheduler';

/**
 * diffusers' `PNDMScheduler`: pseudo linear multi-step (PLMS, the 4th-order Adams–Bashforth combination
 * of the last model outputs), optionally preceded by the Runge–Kutta warm-up (`skip_prk_steps=False`).
 * Stateful: the schedule repeats one timestep and `step` tells the calls apart by its own counter.
 */
export class PndmScheduler implements Scheduler {
  readonly name: SamplerName;
  readonly sigmas = null;
  readonly initNoiseSigma = 1.0;
  timesteps: readonly number[] = [];

  private readonly schedule: NoiseSchedule;
  private readonly finalAlphaCumprod: number;
  private readonly skipPrkSteps: boolean;
  private readonly predictionType: 'epsilon' | 'v_prediction';
  private readonly spacing: TimestepSpacing;
  private readonly stepsOffset: number;

  private numInferenceSteps: number | null = null;
  private prkTimesteps: number[] = [];
  private counter = 0;
  /** ets history (last 4 model outputs), oldest first; buffers are recycled. */
  private ets: Float32Array[] = [];
  private spare: Float32Array[] = [];
  private curSample: Float32Array | null = null;
  private curModelOutput: Float32Array | null = null;
  private tmp: Float32Array | null = null;

  constructor(name: SamplerName, config: SchedulerConfig, overrides: SchedulerConfig = {}) {
    this.name = name;
    const cfg = new ConfigReader(NAME, config, overrides);
    this.schedule = readNoiseSchedule(cfg, DEFAULT_BETAS, { rescaleKey: false, zeroSnrPinsLast: false });
    this.skipPrkSteps = cfg.boolean('skip_prk_steps', false);
    this.finalAlphaCumprod = cfg.boolean('set_alpha_to_one', false) ? 1.0 : this.schedule.alphasCumprod[0]!;
    this.predictionType = cfg.choice('prediction_type', ['epsilon', 'v_prediction'] as const, 'epsilon');
    this.spacing = cfg.choice('timestep_spacing', TIMESTEP_SPACINGS, 'leading');
    this.stepsOffset = cfg.integer('steps_offset', 0);
  }

  /** The training noise schedule's cumulative alpha products (float32), for callers that need them. */
  get alphasCumprod(): Float32Array {
    return this.schedule.alphasCumprod;
  }

  setTimesteps(steps: number): void {
    checkSteps(NAME, steps);
    const n = this.schedule.numTrainTimesteps;
    this.numInferenceSteps = steps;
    let base: number[];
    if (this.spacing === 'linspace') {
      base = npLinspace(0, n - 1, steps).map(roundHalfEven);
    } else if (this.spacing === 'leading') {
      const ratio = Math.floor(n / steps);
      base = Array.from({ length: steps }, (_, i) => i * ratio + this.stepsOffset);
    } else {
      base = npArange(n, 0, -(n / steps))
        .map(roundHalfEven)
        .reverse()
        .map((t) => t - 1);
    }
    if (this.skipPrkSteps) {
      // [t0 .. t_{n-2}, t_{n-2}, t_{n-1}] reversed: the second-to-last value repeats.
      const plms = [...base.slice(0, -1), ...base.slice(-2, -1), ...base.slice(-1)].reverse();
      this.prkTimesteps = [];
      this.timesteps = plms;
    } else {
      const half = Math.floor(Math.floor(n / steps) / 2);
      const lastFour = base.slice(-4);
      const prk: number[] = [];
      for (const t of lastFour) prk.push(t, t + half);
      // prk[:-1].repeat(2)[1:-1][::-1]
      const repeated = prk.slice(0, -1).flatMap((t) => [t, t]);
      this.prkTimesteps = repeated.slice(1, -1).reverse();
      const plms = base.slice(0, -3).reverse();
      this.timesteps = [...this.prkTimesteps, ...plms];
    }
    this.ets = [];
    this.spare = [];
    this.counter = 0;
    this.curSample = null;
    this.curModelOutput = null;
  }

  /** diffusers' PNDMScheduler has no `set_begin_index`: it steps by timestep, so a mid-schedule start needs nothing. */
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
    _generators: readonly NoiseGenerator[],
  ): Float32Array {
    if (this.numInferenceSteps === null) throw notReady(NAME);
    checkSameLength(NAME, modelOutput, sample);
    if (this.counter < this.prkTimesteps.length && !this.skipPrkSteps) {
      return this.stepPrk(modelOutput, timestep, sample);
    }
    return this.stepPlms(modelOutput, timestep, sample);
  }

  private stepPrk(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    const steps = this.numInferenceSteps!;
    const n = this.schedule.numTrainTimesteps;
    const diffToPrev = this.counter % 2 ? 0 : Math.floor(Math.floor(n / steps) / 2);
    const prevTimestep = timestep - diffToPrev;
    const t = this.prkTimesteps[Math.floor(this.counter / 4) * 4]!;
    const len = sample.length;
    const sixth = f32(1 / 6);
    const third = f32(1 / 3);
    let output = modelOutput;
    const phase = this.counter % 4;
    if (phase === 0) {
      // cur_model_output (the int 0) + 1/6 * model_output
      const acc = new Float32Array(len);
      for (let i = 0; i < len; i++) acc[i] = f32(sixth * modelOutput[i]!);
      this.curModelOutput = acc;
      this.pushEts(modelOutput);
      this.curSample = this.copyOf(sample, this.curSample);
    } else if (phase === 1 || phase === 2) {
      const acc = this.curModelOutput!;
      for (let i = 0; i < len; i++) acc[i] = f32(acc[i]! + f32(third * modelOutput[i]!));
    } else {
      const acc = this.curModelOutput!;
      output = new Float32Array(len);
      for (let i = 0; i < len; i++) output[i] = f32(acc[i]! + f32(sixth * modelOutput[i]!));
      this.curModelOutput = null;
    }
    const cur = this.curSample ?? sample;
    const prev = this.prevSample(cur, t, prevTimestep, output);
    this.counter += 1;
    return prev;
  }

  private stepPlms(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    if (!this.skipPrkSteps && this.ets.length < 3) {
      throw notReady(`${NAME} (PLMS needs the Runge-Kutta warm-up first)`);
    }
    const ratio = Math.floor(this.schedule.numTrainTimesteps / this.numInferenceSteps!);
    let prevTimestep = timestep - ratio;
    let t = timestep;
    if (this.counter !== 1) {
      this.pushEts(modelOutput);
    } else {
      prevTimestep = timestep;
      t = timestep + ratio;
    }
    const len = sample.length;
    const ets = this.ets;
    let output: Float32Array;
    let cur = sample;
    if (ets.length === 1 && this.counter === 0) {
      output = modelOutput;
      this.curSample = this.copyOf(sample, this.curSample);
    } else if (ets.length === 1 && this.counter === 1) {
      const e1 = ets[0]!;
      output = this.scratch(len);
      for (let i = 0; i < len; i++) output[i] = f32(f32(modelOutput[i]! + e1[i]!) / 2);
      cur = this.curSample!;
      this.curSample = null;
    } else if (ets.length === 2) {
      const e1 = ets[1]!;
      const e2 = ets[0]!;
      output = this.scratch(len);
      for (let i = 0; i < len; i++) output[i] = f32(f32(f32(3 * e1[i]!) - e2[i]!) / 2);
    } else if (ets.length === 3) {
      const e1 = ets[2]!;
      const e2 = ets[1]!;
      const e3 = ets[0]!;
      output = this.scratch(len);
      for (let i = 0; i < len; i++) {
        output[i] = f32(f32(f32(f32(23 * e1[i]!) - f32(16 * e2[i]!)) + f32(5 * e3[i]!)) / 12);
      }
    } else {
      const e1 = ets[3]!;
      const e2 = ets[2]!;
      const e3 = ets[1]!;
      const e4 = ets[0]!;
      const c = f32(1 / 24);
      output = this.scratch(len);
      for (let i = 0; i < len; i++) {
        const inner = f32(f32(f32(f32(55 * e1[i]!) - f32(59 * e2[i]!)) + f32(37 * e3[i]!)) - f32(9 * e4[i]!));
        output[i] = f32(c * inner);
      }
    }
    const prev = this.prevSample(cur, t, prevTimestep, output);
    this.counter += 1;
    return prev;
  }

  /** `_get_prev_sample`: formula (9) of the PNDM paper, in float32. */
  private prevSample(
    sample: Float32Array,
    t: number,
    prevT: number,
    modelOutput: Float32Array,
  ): Float32Array {
    const ac = this.schedule.alphasCumprod;
    const alphaProdT = ac[t];
    if (alphaProdT === undefined) throw timestepOutOfRange(NAME, t, ac.length);
    const alphaProdPrev = prevT >= 0 ? ac[prevT]! : this.finalAlphaCumprod;
    const betaProdT = f32(1 - alphaProdT);
    const betaProdPrev = f32(1 - alphaProdPrev);
    const len = sample.length;
    let eps = modelOutput;
    if (this.predictionType === 'v_prediction') {
      const sa = f32(Math.sqrt(alphaProdT));
      const sb = f32(Math.sqrt(betaProdT));
      const converted = new Float32Array(len);
      for (let i = 0; i < len; i++) converted[i] = f32(f32(sa * modelOutput[i]!) + f32(sb * sample[i]!));
      eps = converted;
    }
    const sampleCoeff = f32(Math.sqrt(f32(alphaProdPrev / alphaProdT)));
    const denom = f32(
      f32(alphaProdT * f32(Math.sqrt(betaProdPrev))) +
        f32(Math.sqrt(f32(f32(alphaProdT * betaProdT) * alphaProdPrev))),
    );
    const diff = f32(alphaProdPrev - alphaProdT);
    const out = new Float32Array(len);
    for (let i = 0; i < len; i++) {
      out[i] = f32(sampleCoeff * sample[i]!) - f32(f32(diff * eps[i]!) / denom);
    }
    return out;
  }

  /** ets = ets[-3:] + [model_output], copying into a recycled buffer. */
  private pushEts(modelOutput: Float32Array): void {
    while (this.ets.length > 3) this.spare.push(this.ets.shift()!);
    const reuse = this.spare.pop() ?? null;
    this.ets.push(this.copyOf(modelOutput, reuse));
  }

  private copyOf(src: Float32Array, reuse: Float32Array | null): Float32Array {
    const dst = reuse !== null && reuse.length === src.length ? reuse : new Float32Array(src.length);
    dst.set(src);
    return dst;
  }

  private scratch(len: number): Float32Array {
    if (this.tmp === null || this.tmp.length !== len) this.tmp = new Float32Array(len);
    return this.tmp;
  }
}
