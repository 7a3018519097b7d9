import type { SamplerName } from '../../core/samplers.ts';
import type { NoiseGenerator, Scheduler, SchedulerConfig } from '../types.ts';
import {
  addNoiseIndex,
  BETA_SCHEDULES,
  checkSameLength,
  checkSteps,
  DEFAULT_BETAS,
  type NoiseSchedule,
  notReady,
  readNoiseSchedule,
  scratch,
  sigmaTable,
  startIndex,
  type Thresholding,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
  thresholdSample,
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
} from './numeric.ts';

const NAME = 'DPMSolverMultistepScheduler';
const PREDICTION_TYPES = ['epsilon', 'sample', 'v_prediction', 'flow_prediction'] as const;

/**
 * diffusers' `DPMSolverMultistepScheduler` with `algorithm_type="dpmsolver++"` and `solver_order=2`
 * (what the `dpmpp_2m` samplers are): data-prediction multistep DPM-Solver++ (midpoint or heun),
 * first order on the first step and on the final step(s) per `lower_order_final` / `final_sigmas_type`.
 */
export class DpmSolverMultistepScheduler implements Scheduler {
  readonly name: SamplerName;
  readonly initNoiseSigma = 1.0;
  timesteps: readonly number[] = [];
  sigmas: readonly number[] | null = null;

  private readonly schedule: NoiseSchedule;
  private readonly sigmaTable: Float32Array;
  private readonly logSigmas: Float32Array;
  private readonly predictionType: (typeof PREDICTION_TYPES)[number];
  private readonly thresholding: Thresholding | null;
  private readonly solverType: 'midpoint' | 'heun';
  private readonly lowerOrderFinal: boolean;
  private readonly eulerAtFinal: boolean;
  private readonly sigmaKind: 'plain' | 'karras' | 'lu' | 'exponential' | 'flow';
  private readonly flowShift: number;
  /** `_sigma_to_alpha_sigma_t` follows the config flag, whichever sigma schedule won. */
  private readonly useFlowSigmas: boolean;
  private readonly finalSigmaMin: boolean;
  private readonly lambdaMinClipped: number;
  private readonly spacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private readonly sigmaMin: number | null;
  private readonly sigmaMax: number | null;
  private readonly squaredCos: boolean;

  private stepIndex: number | null = null;
  private beginIndex: number | null = null;
  private lowerOrderNums = 0;
  /** model_outputs[-2], model_outputs[-1] (converted to x0 predictions); buffers swap each step. */
  private previousX0: Float32Array | null = null;
  private currentX0: Float32Array | null = null;

  constructor(name: SamplerName, config: SchedulerConfig, overrides: SchedulerConfig = {}) {
    this.name = name;
    const cfg = new ConfigReader(NAME, config, overrides);
    this.schedule = readNoiseSchedule(cfg, DEFAULT_BETAS, { rescaleKey: true, zeroSnrPinsLast: true });
    this.squaredCos = cfg.choice('beta_schedule', BETA_SCHEDULES, 'linear') === 'squaredcos_cap_v2';
    if (cfg.integer('solver_order', 2) !== 2) throw cfg.unsupported('solver_order other than 2');
    const algorithm = cfg.choice(
      'algorithm_type',
      ['dpmsolver', 'dpmsolver++', 'sde-dpmsolver', 'sde-dpmsolver++', 'deis'] as const,
      'dpmsolver++',
    );
    // diffusers maps the legacy "deis" to dpmsolver++.
    if (algorithm !== 'dpmsolver++' && algorithm !== 'deis')
      throw cfg.unsupported(`algorithm_type "${algorithm}"`);
    this.predictionType = cfg.choice('prediction_type', PREDICTION_TYPES, 'epsilon');
    this.thresholding = cfg.boolean('thresholding', false)
      ? {
          ratio: cfg.number('dynamic_thresholding_ratio', 0.995),
          maxValue: cfg.number('sample_max_value', 1.0),
        }
      : null;
    const solver = cfg.choice(
      'solver_type',
      ['midpoint', 'heun', 'logrho', 'bh1', 'bh2'] as const,
      'midpoint',
    );
    this.solverType = solver === 'heun' ? 'heun' : 'midpoint';
    this.lowerOrderFinal = cfg.boolean('lower_order_final', true);
    this.eulerAtFinal = cfg.boolean('euler_at_final', false);
    const flags = {
      karras: cfg.boolean('use_karras_sigmas', false),
      exponential: cfg.boolean('use_exponential_sigmas', false),
      beta: cfg.boolean('use_beta_sigmas', false),
    };
    if (Number(flags.karras) + Number(flags.exponential) + Number(flags.beta) > 1) {
      throw cfg.unsupported('more than one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas');
    }
    if (flags.beta) throw cfg.unsupported('use_beta_sigmas (needs scipy.stats.beta.ppf)');
    const lu = cfg.boolean('use_lu_lambdas', false);
    const flow = cfg.boolean('use_flow_sigmas', false);
    // Same precedence as the if/elif chain in set_timesteps.
    this.sigmaKind = flags.karras
      ? 'karras'
      : lu
        ? 'lu'
        : flags.exponential
          ? 'exponential'
          : flow
            ? 'flow'
            : 'plain';
    if (cfg.boolean('use_dynamic_shifting', false)) throw cfg.unsupported('use_dynamic_shifting');
    if (cfg.nullableChoice('variance_type', ['learned', 'learned_range'] as const) !== null) {
      throw cfg.unsupported('variance_type (learned variance channels)');
    }
    this.flowShift = cfg.number('flow_shift', 1.0);
    this.useFlowSigmas = flow;
    this.finalSigmaMin =
      cfg.choice('final_sigmas_type', ['zero', 'sigma_min'] as const, 'zero') === 'sigma_min';
    this.lambdaMinClipped = cfg.number('lambda_min_clipped', Number.NEGATIVE_INFINITY);
    this.spacing = cfg.choice('timestep_spacing', TIMESTEP_SPACINGS, 'linspace');
    this.stepsOffset = cfg.integer('steps_offset', 0);
    // Not constructor arguments of this class, but `_convert_to_karras` honours them when present in the
    // config dict (from_config keeps unknown keys in `.config`).
    this.sigmaMin = cfg.nullableNumber('sigma_min');
    this.sigmaMax = cfg.nullableNumber('sigma_max');
    this.sigmaTable = sigmaTable(this.schedule.alphasCumprod);
    this.logSigmas = logF32(this.sigmaTable);
  }

  /** `torch.searchsorted(torch.flip(lambda_t, [0]), lambda_min_clipped)`, lambda_t in float32. */
  private clippedIndex(): number {
    if (this.lambdaMinClipped === Number.NEGATIVE_INFINITY) return 0;
    const ac = this.schedule.alphasCumprod;
    const n = ac.length;
    let idx = 0;
    for (let i = n - 1; i >= 0; i--) {
      const a = ac[i]!;
      const lambda = f32(f32(Math.log(f32(Math.sqrt(a)))) - f32(Math.log(f32(Math.sqrt(f32(1 - a))))));
      if (lambda < this.lambdaMinClipped) idx++;
      else break;
    }
    return idx;
  }

  setTimesteps(steps: number): void {
    checkSteps(NAME, steps);
    const n = this.schedule.numTrainTimesteps;
    const lastTimestep = n - this.clippedIndex();
    let timesteps: number[];
    if (this.spacing === 'linspace') {
      timesteps = npLinspace(0, lastTimestep - 1, steps + 1)
        .map(roundHalfEven)
        .reverse()
        .slice(0, -1);
    } else if (this.spacing === 'leading') {
      const ratio = Math.floor(lastTimestep / (steps + 1));
      timesteps = Array.from({ length: steps }, (_, i) => (steps - i) * ratio + this.stepsOffset);
    } else {
      timesteps = npArange(lastTimestep, 0, -(n / steps)).map((t) => roundHalfEven(t) - 1);
    }
    const table = this.sigmaTable;
    let sigmas: number[];
    if (this.sigmaKind === 'karras' || this.sigmaKind === 'exponential') {
      // in_sigmas = flipped table: in_sigmas[-1] = table[0], in_sigmas[0] = table[-1].
      const sMin = this.sigmaMin ?? table[0]!;
      const sMax = this.sigmaMax ?? table[n - 1]!;
      sigmas =
        this.sigmaKind === 'karras' ? karrasSigmas(sMin, sMax, steps) : exponentialSigmas(sMin, sMax, steps);
      const ts = sigmas.map((s) => sigmaToT(s, this.logSigmas));
      timesteps =
        this.sigmaKind === 'karras' && !this.squaredCos ? ts.map(roundHalfEven) : ts.map(Math.trunc);
    } else if (this.sigmaKind === 'lu') {
      const lambdaMin = this.logSigmas[0]!;
      const lambdaMax = this.logSigmas[n - 1]!;
      sigmas = npLinspace(0, 1, steps).map((r) => Math.exp(lambdaMax + r * (lambdaMin - lambdaMax)));
      const ts = sigmas.map((s) => sigmaToT(s, this.logSigmas));
      timesteps = this.squaredCos ? ts.map(Math.trunc) : ts.map(roundHalfEven);
    } else if (this.sigmaKind === 'flow') {
      const alphas = npLinspace(1, 1 / n, steps + 1);
      const shift = this.flowShift;
      sigmas = alphas
        .map((a) => 1.0 - a)
        .map((s) => (shift * s) / (1 + (shift - 1) * s))
        .reverse()
        .slice(0, -1);
      timesteps = sigmas.map((s) => Math.trunc(s * n));
    } else {
      sigmas = timesteps.map((t) => npInterpIndex(t, table));
    }
    const a0 = this.schedule.alphasCumprod[0]!;
    const last = this.finalSigmaMin ? f32(Math.sqrt(f32(f32(1 - a0) / a0))) : 0;
    this.sigmas = [...sigmas, last].map(f32);
    this.timesteps = timesteps;
    this.stepIndex = null;
    this.beginIndex = null;
    this.lowerOrderNums = 0;
    this.previousX0 = null;
    this.currentX0 = null;
  }

  scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  setBeginIndex(index: number): void {
    this.beginIndex = index;
  }

  /** `add_noise`: alpha_t * x + sigma_t * noise at the begin index's sigma. */
  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    if (this.sigmas === null) throw notReady(NAME);
    const index = addNoiseIndex(NAME, this.beginIndex, this.stepIndex, this.timesteps, timestep, 'last');
    const [alpha, sigma] = this.alphaSigma(this.sigmas[index]!);
    const out = new Float32Array(original.length);
    for (let i = 0; i < out.length; i++) out[i] = f32(f32(alpha * original[i]!) + f32(sigma * noise[i]!));
    return out;
  }

  /** alpha_t, sigma_t for a sigma (`_sigma_to_alpha_sigma_t`), float32. */
  private alphaSigma(sigma: number): [number, number] {
    if (this.useFlowSigmas) return [f32(1 - sigma), sigma];
    const alpha = f32(1 / f32(Math.sqrt(f32(f32(sigma * sigma) + 1))));
    return [alpha, f32(sigma * alpha)];
  }

  private lambda(alpha: number, sigma: number): number {
    return f32(f32(Math.log(alpha)) - f32(Math.log(sigma)));
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
      this.stepIndex = startIndex(NAME, this.beginIndex, this.timesteps, timestep, 'last');
    }
    const i = this.stepIndex;
    const count = this.timesteps.length;
    const lowerOrderFinal =
      i === count - 1 && (this.eulerAtFinal || (this.lowerOrderFinal && count < 15) || !this.finalSigmaMin);
    // (lower_order_second only matters for solver_order 3.)

    // convert_model_output → x0 prediction, into the buffer that held model_outputs[-2].
    const len = sample.length;
    const x0 = scratch(this.previousX0, len);
    this.previousX0 = this.currentX0;
    this.currentX0 = x0;
    const [alphaS0, sigmaS0] = this.alphaSigma(sigmas[i]!);
    if (this.predictionType === 'epsilon') {
      for (let k = 0; k < len; k++) x0[k] = f32(sample[k]! - f32(sigmaS0 * modelOutput[k]!)) / alphaS0;
    } else if (this.predictionType === 'sample') {
      x0.set(modelOutput);
    } else if (this.predictionType === 'v_prediction') {
      for (let k = 0; k < len; k++) x0[k] = f32(alphaS0 * sample[k]!) - f32(sigmaS0 * modelOutput[k]!);
    } else {
      const sigma = sigmas[i]!;
      for (let k = 0; k < len; k++) x0[k] = sample[k]! - f32(sigma * modelOutput[k]!);
    }
    if (this.thresholding !== null) thresholdSample(x0, Math.max(1, generators.length), this.thresholding);

    const [alphaT, sigmaT] = this.alphaSigma(sigmas[i + 1]!);
    const lambdaT = this.lambda(alphaT, sigmaT);
    const lambdaS0 = this.lambda(alphaS0, sigmaS0);
    const h = f32(lambdaT - lambdaS0);
    const expm = f32(f32(Math.exp(-h)) - 1);
    const ratio = f32(sigmaT / sigmaS0);
    const c0 = f32(alphaT * expm);
    const out = new Float32Array(len);
    const prev = this.previousX0;
    if (this.lowerOrderNums < 1 || lowerOrderFinal || prev === null) {
      // dpm_solver_first_order_update
      for (let k = 0; k < len; k++) out[k] = f32(ratio * sample[k]!) - f32(c0 * x0[k]!);
    } else {
      // multistep_dpm_solver_second_order_update
      const [alphaS1, sigmaS1] = this.alphaSigma(sigmas[i - 1]!);
      const lambdaS1 = this.lambda(alphaS1, sigmaS1);
      const h0 = f32(lambdaS0 - lambdaS1);
      const r0 = f32(h0 / h);
      const invR0 = f32(1 / r0);
      if (this.solverType === 'midpoint') {
        const c1 = f32(0.5 * c0);
        for (let k = 0; k < len; k++) {
          const m0 = x0[k]!;
          const d1 = f32(invR0 * f32(m0 - prev[k]!));
          out[k] = f32(f32(ratio * sample[k]!) - f32(c0 * m0)) - f32(c1 * d1);
        }
      } else {
        const c1 = f32(alphaT * f32(f32(expm / h) + 1));
        for (let k = 0; k < len; k++) {
          const m0 = x0[k]!;
          const d1 = f32(invR0 * f32(m0 - prev[k]!));
          out[k] = f32(f32(ratio * sample[k]!) - f32(c0 * m0)) + f32(c1 * d1);
        }
      }
    }
    if (this.lowerOrderNums < 2) this.lowerOrderNums += 1;
    this.stepIndex += 1;
    return out;
  }
}
