import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { InternalError, UserError } from '../../core/errors.ts';
import { SAMPLERS, type SamplerName } from '../../core/samplers.ts';
import { createGenerator } from '../../models/rng/index.ts';
import {
  createScheduler,
  DdimScheduler,
  LcmScheduler,
  PndmScheduler,
  pipelineSchedulerConfig,
} from '../../models/schedulers/index.ts';
import type { Scheduler, SchedulerConfig } from '../../models/types.ts';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'schedulers');
const f = Math.fround;

interface TraceRecord {
  scheduler: SamplerName;
  steps: number;
  config: SchedulerConfig;
  timesteps: number[];
  sigmas?: number[];
  init_noise_sigma: number;
  x_seed: number;
  noise_seed: number;
  sample_after_each_step_f32_b64: string[];
}

// Python's json writes -inf as a bare `-Infinity` token, which JSON.parse rejects: quote it.
const TRACES: TraceRecord[] = JSON.parse(
  readFileSync(join(FIXTURES, 'scheduler-traces.json'), 'utf8').replace(/: -Infinity\b/g, ': "-Infinity"'),
);
const SD15: SchedulerConfig = JSON.parse(readFileSync(join(FIXTURES, 'sd15-scheduler-config.json'), 'utf8'));

function decodeF32(b64: string): Float32Array {
  const bytes = Buffer.from(b64, 'base64');
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readFloatLE(i * 4);
  return out;
}

/** The check used throughout: |a - b| <= tol * max(1, |b|) (absolute near zero, relative elsewhere). */
function within(actual: number, expected: number, tol: number): boolean {
  return Math.abs(actual - expected) <= tol * Math.max(1, Math.abs(expected));
}

function worst(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let w = 0;
  for (let i = 0; i < expected.length; i++) {
    w = Math.max(w, Math.abs(actual[i]! - expected[i]!) / Math.max(1, Math.abs(expected[i]!)));
  }
  return w;
}

/** The trace's stand-in UNet: eps = 0.5 * xin * cos(t / 100) + 0.1, in float32 tensor arithmetic. */
function standInModel(xin: Float32Array, t: number): Float32Array {
  const c = f(Math.cos(f(t / 100)));
  const eps = new Float32Array(xin.length);
  for (let i = 0; i < xin.length; i++) eps[i] = f(f(f(0.5 * xin[i]!) * c) + f(0.1));
  return eps;
}

describe('schedulers against the diffusers traces (SD 1.5 config, from_config)', () => {
  // Samples within 1e-5 * max(1, |expected|); sigmas and init_noise_sigma within 1e-6 of that kind.
  for (const record of TRACES) {
    it(`${record.scheduler} at ${record.steps} steps`, () => {
      const scheduler = createScheduler(record.scheduler, SD15);
      scheduler.setTimesteps(record.steps);
      expect(scheduler.name).toBe(record.scheduler);
      expect(scheduler.timesteps).toEqual(record.timesteps);
      if (record.sigmas === undefined) {
        expect(scheduler.sigmas).toBeNull();
      } else {
        expect(scheduler.sigmas).not.toBeNull();
        expect(scheduler.sigmas!.length).toBe(record.sigmas.length);
        expect(worst(scheduler.sigmas!, record.sigmas)).toBeLessThanOrEqual(1e-6);
      }
      expect(within(scheduler.initNoiseSigma, record.init_noise_sigma, 1e-6)).toBe(true);

      const noise = createGenerator('cpu', record.noise_seed);
      const ins = f(scheduler.initNoiseSigma);
      let x: Float32Array = createGenerator('cpu', record.x_seed)
        .randn(64)
        .map((v) => f(v * ins));
      record.timesteps.forEach((t, i) => {
        const xin = scheduler.scaleModelInput(x, t);
        x = scheduler.step(standInModel(xin, t), t, x, [noise]);
        const expected = decodeF32(record.sample_after_each_step_f32_b64[i]!);
        const err = worst(x, expected);
        if (err > 1e-5) throw new Error(`step ${i} (t=${t}): worst scaled error ${err}`);
      });
      expect(record.sample_after_each_step_f32_b64.length).toBe(record.timesteps.length);
    });
  }

  it('covers every sampler name', () => {
    expect(new Set(TRACES.map((r) => r.scheduler))).toEqual(new Set(SAMPLERS));
  });
});

describe('from_config semantics', () => {
  it('drops keys listed in _use_default_values, so the class default applies', () => {
    // The trace's PNDM config records timestep_spacing "leading" as a PNDM default; EulerDiscrete's own
    // default is "linspace": np.linspace(0, 999, 4)[::-1] = [999, 666, 333, 0].
    const pndmConfig = TRACES.find((r) => r.scheduler === 'pndm')!.config;
    const euler = createScheduler('euler', pndmConfig);
    euler.setTimesteps(4);
    expect(euler.timesteps).toEqual([999, 666, 333, 0]);
    // Each record's own post-construction config rebuilds the same schedule.
    for (const record of TRACES) {
      const s = createScheduler(record.scheduler, record.config);
      s.setTimesteps(record.steps);
      expect(s.timesteps).toEqual(record.timesteps);
    }
  });

  it('honours an explicit timestep_spacing "leading" for Euler, with init_noise_sigma sqrt(max² + 1)', () => {
    const euler = createScheduler('euler', { ...SD15, timestep_spacing: 'leading' });
    euler.setTimesteps(4);
    // leading: (np.arange(4) * (1000 // 4))[::-1] + steps_offset = [750, 500, 250, 0] + 1
    expect(euler.timesteps).toEqual([751, 501, 251, 1]);
    const max = euler.sigmas![0]!;
    expect(euler.initNoiseSigma).toBe(f(Math.sqrt(f(f(max * max) + 1))));
  });

  it('applies the sampler-defining overrides for dpmpp_2m / dpmpp_2m_karras', () => {
    const dpmConfig = { ...SD15, _class_name: 'DPMSolverMultistepScheduler', use_karras_sigmas: true };
    const plain = createScheduler('dpmpp_2m', dpmConfig);
    plain.setTimesteps(4);
    // linspace: np.linspace(0, 999, 5).round()[::-1][:-1] = [999, 749, 500, 250]
    expect(plain.timesteps).toEqual([999, 749, 500, 250]);
    const karras = createScheduler('dpmpp_2m_karras', SD15);
    karras.setTimesteps(4);
    expect(karras.timesteps).toEqual(
      TRACES.find((r) => r.scheduler === 'dpmpp_2m_karras' && r.steps === 4)!.timesteps,
    );
  });
});

describe("StableDiffusionPipeline's rewrite of outdated scheduler configs", () => {
  // An old-style PNDM config: no steps_offset (class default 0), as early SD exports shipped.
  const OLD_PNDM: SchedulerConfig = {
    _class_name: 'PNDMScheduler',
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    num_train_timesteps: 1000,
    skip_prk_steps: true,
    set_alpha_to_one: false,
  };

  it("gives the pipeline's own scheduler steps_offset 1 even when the file lacks it", () => {
    const s = createScheduler('pndm', pipelineSchedulerConfig('pndm', OLD_PNDM));
    s.setTimesteps(4);
    // leading, skip_prk_steps: arange(0, 4) * (1000 // 4) + 1 = [1, 251, 501, 751];
    // plms timesteps = [751, 501, 501, 251, 1] (the second-to-last repeated: _timesteps[:-1] + [-2] + [-1])
    expect(s.timesteps).toEqual([751, 501, 501, 251, 1]);
    const unpatched = createScheduler('pndm', OLD_PNDM);
    unpatched.setTimesteps(4);
    expect(unpatched.timesteps).toEqual([750, 500, 500, 250, 0]);
  });

  it('leaves a swapped-in scheduler on its class default when the key was only a default', () => {
    // from_config drops keys that were defaults: steps_offset is not in the file, so Euler keeps its 0.
    const config = pipelineSchedulerConfig('euler', { ...OLD_PNDM, timestep_spacing: 'leading' });
    expect(config.steps_offset).toBeUndefined();
    const euler = createScheduler('euler', config);
    euler.setTimesteps(4);
    // leading with steps_offset 0: (arange(4) * 250)[::-1] = [750, 500, 250, 0]
    expect(euler.timesteps).toEqual([750, 500, 250, 0]);
  });

  it('rewrites keys present in the file for every scheduler', () => {
    const config = pipelineSchedulerConfig('ddim', { ...OLD_PNDM, steps_offset: 0, clip_sample: true });
    expect(config).toMatchObject({ steps_offset: 1, clip_sample: false });
    // A DDIM model config without clip_sample: DDIM's default is True, and the pipeline turns it off.
    const ownDdim = pipelineSchedulerConfig('ddim', { ...OLD_PNDM, _class_name: 'DDIMScheduler' });
    expect(ownDdim).toMatchObject({ steps_offset: 1, clip_sample: false });
    // Nothing to rewrite in an up-to-date config.
    expect(pipelineSchedulerConfig('pndm', SD15)).toEqual(SD15);
  });
});

describe('timestep spacings and configs the traces do not cover (expectations derived from diffusers source)', () => {
  // SD 2.x "v" model config (DDIMScheduler, prediction_type v_prediction, steps_offset 1).
  const SD2_V: SchedulerConfig = {
    _class_name: 'DDIMScheduler',
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    beta_start: 0.00085,
    clip_sample: false,
    num_train_timesteps: 1000,
    prediction_type: 'v_prediction',
    set_alpha_to_one: false,
    skip_prk_steps: true,
    steps_offset: 1,
    trained_betas: null,
  };

  it('v_prediction config: timesteps per class default spacing (5 steps)', () => {
    const expected: Partial<Record<SamplerName, number[]>> = {
      // DDIM leading: (np.arange(5) * (1000 // 5))[::-1] + 1
      ddim: [801, 601, 401, 201, 1],
      // PNDM leading, skip_prk_steps: _t = [1, 201, 401, 601, 801];
      // concat(_t[:-1], _t[-2:-1], _t[-1:])[::-1]
      pndm: [801, 601, 601, 401, 201, 1],
      // Euler / Euler a linspace: np.linspace(0, 999, 5, dtype=float32)[::-1]
      euler: [999, 749.25, 499.5, 249.75, 0],
      euler_a: [999, 749.25, 499.5, 249.75, 0],
      // DPM linspace: np.linspace(0, 999, 6).round() = [0, 200, 400, 599, 799, 999]; [::-1][:-1]
      dpmpp_2m: [999, 799, 599, 400, 200],
      // LCM: origin = arange(1, 51) * 20 - 1 reversed = [999, 979, ..., 19];
      // indices floor(np.linspace(0, 50, 5, endpoint=False)) = [0, 10, 20, 30, 40]
      lcm: [999, 799, 599, 399, 199],
    };
    for (const [name, timesteps] of Object.entries(expected)) {
      const s = createScheduler(name as SamplerName, SD2_V);
      s.setTimesteps(5);
      expect(s.timesteps, name).toEqual(timesteps);
    }
  });

  it('trailing spacing (SD 1.5 config with timestep_spacing "trailing")', () => {
    const trailing = { ...SD15, timestep_spacing: 'trailing' };
    const cases: Array<[SamplerName, number, number[]]> = [
      // DDIM: np.round(np.arange(1000, 0, -1000 / 4)) - 1
      ['ddim', 4, [999, 749, 499, 249]],
      // np.arange(1000, 0, -333.33..) = [1000, 666.67, 333.33] → round → [1000, 667, 333] → -1
      ['ddim', 3, [999, 666, 332]],
      ['ddim', 10, [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]],
      // PNDM: _t = np.round(np.arange(1000, 0, -250))[::-1] - 1 = [249, 499, 749, 999];
      // skip_prk: concat(_t[:-1], _t[-2:-1], _t[-1:])[::-1]
      ['pndm', 4, [999, 749, 749, 499, 249]],
      // Euler / Euler a: np.arange(1000, 0, -250).round().astype(float32) - 1
      ['euler', 4, [999, 749, 499, 249]],
      ['euler_a', 4, [999, 749, 499, 249]],
      // DPM: np.arange(last_timestep=1000, 0, -1000 / 4).round() - 1
      ['dpmpp_2m', 4, [999, 749, 499, 249]],
    ];
    for (const [name, steps, timesteps] of cases) {
      const s = createScheduler(name, trailing);
      s.setTimesteps(steps);
      expect(s.timesteps, `${name} ${steps}`).toEqual(timesteps);
    }
    // Euler-family init_noise_sigma for trailing spacing is the largest sigma itself.
    const euler = createScheduler('euler', trailing);
    euler.setTimesteps(4);
    expect(euler.initNoiseSigma).toBe(euler.sigmas![0]);
  });

  it('PNDM with the Runge-Kutta warm-up (skip_prk_steps false) schedules and samples', () => {
    const s = createScheduler('pndm', { ...SD15, skip_prk_steps: false });
    s.setTimesteps(10);
    // _t = arange(10) * 100 + 1; prk from _t[-4:] = [601, 701, 801, 901] each with +50:
    // [601,651,...,951][:-1].repeat(2)[1:-1][::-1]; then plms = _t[:-3][::-1]
    expect(s.timesteps).toEqual([
      901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601, 501, 401, 301, 201, 101, 1,
    ]);
    let x = createGenerator('cpu', 3).randn(64);
    for (const t of s.timesteps) x = s.step(standInModel(s.scaleModelInput(x, t), t), t, x, []);
    expect(x.every(Number.isFinite)).toBe(true);
  });

  it('Euler continuous-timestep v_prediction uses 0.25 * log(sigma) as timesteps', () => {
    const s = createScheduler('euler', { ...SD2_V, timestep_type: 'continuous' });
    s.setTimesteps(6);
    expect(s.timesteps.length).toBe(6);
    s.timesteps.forEach((t, i) => {
      expect(t).toBe(f(0.25 * f(Math.log(s.sigmas![i]!))));
    });
  });
});

describe('v_prediction step maths', () => {
  // For a sample built from (x0, eps) and v = alpha * eps - sigma * x0, a v_prediction step must land
  // where the epsilon step lands given eps: both recover the same x0 and eps estimates.
  const x0 = createGenerator('cpu', 11).randn(256);
  const eps = createGenerator('cpu', 12).randn(256);

  /** (alpha_t, sigma_t) of the variance-preserving forward process at timestep t. */
  function alphaSigma(s: Scheduler, t: number): [number, number] {
    if (s instanceof DdimScheduler || s instanceof PndmScheduler || s instanceof LcmScheduler) {
      const a = s.alphasCumprod[t]!;
      return [Math.sqrt(a), Math.sqrt(1 - a)];
    }
    const sigma = s.sigmas![s.timesteps.indexOf(t)]!;
    return [1 / Math.sqrt(sigma * sigma + 1), sigma / Math.sqrt(sigma * sigma + 1)];
  }

  for (const name of SAMPLERS) {
    it(name, () => {
      const epsSched = createScheduler(name, SD15);
      const vSched = createScheduler(name, { ...SD15, prediction_type: 'v_prediction' });
      epsSched.setTimesteps(10);
      vSched.setTimesteps(10);
      const epsGen = [createGenerator('cpu', 9)];
      const vGen = [createGenerator('cpu', 9)];
      // PNDM keeps raw model outputs in its multistep history (v's of different timesteps don't
      // combine like eps's), so only its first step compares; the others run two steps, which takes
      // DPM-Solver++ through its second-order update.
      const steps = name === 'pndm' ? 1 : 2;
      // Euler-family samples live in x0 + sigma_k * eps space (sigma_k = sigma / alpha).
      const kSpace = name === 'euler' || name === 'euler_a';
      for (let k = 0; k < steps; k++) {
        const t = epsSched.timesteps[k]!;
        const [alpha, sigma] = alphaSigma(epsSched, t);
        const sample = new Float32Array(x0.length);
        const v = new Float32Array(x0.length);
        for (let i = 0; i < x0.length; i++) {
          sample[i] = (alpha * x0[i]! + sigma * eps[i]!) / (kSpace ? alpha : 1);
          v[i] = alpha * eps[i]! - sigma * x0[i]!;
        }
        const fromEps = epsSched.step(eps, t, sample, epsGen);
        const fromV = vSched.step(v, t, sample, vGen);
        expect(worst(fromV, fromEps), `step ${k}`).toBeLessThanOrEqual(1e-5);
      }
    });
  }
});

describe('batches and generators', () => {
  for (const name of ['euler_a', 'lcm'] as const) {
    it(`${name}: image k's noise comes from generator k only`, () => {
      const a = createGenerator('cpu', 100).randn(64);
      const b = createGenerator('cpu', 200).randn(64);
      const batch = createScheduler(name, SD15);
      const single = createScheduler(name, SD15);
      batch.setTimesteps(4);
      single.setTimesteps(4);
      const gensBatch = [createGenerator('cpu', 5), createGenerator('cpu', 7)];
      const gensSingle = [createGenerator('cpu', 7)];
      let xb: Float32Array = new Float32Array(128);
      xb.set(a, 0);
      xb.set(b, 64);
      let xs: Float32Array = b;
      for (const t of batch.timesteps) {
        xb = batch.step(standInModel(batch.scaleModelInput(xb, t), t), t, xb, gensBatch);
        xs = single.step(standInModel(single.scaleModelInput(xs, t), t), t, xs, gensSingle);
      }
      expect(Array.from(xb.subarray(64))).toEqual(Array.from(xs));
    });
  }

  it('stochastic samplers refuse to step without one generator per image', () => {
    const s = createScheduler('euler_a', SD15);
    s.setTimesteps(2);
    const t = s.timesteps[0]!;
    expect(() => s.step(new Float32Array(64), t, new Float32Array(64), [])).toThrow(InternalError);
    const gens = [1, 2, 3].map((seed) => createGenerator('cpu', seed));
    expect(() => s.step(new Float32Array(64), t, new Float32Array(64), gens)).toThrow(InternalError);
  });
});

describe('errors', () => {
  it('rejects bad configs as internal config errors', () => {
    expect(() => createScheduler('ddim', { ...SD15, beta_schedule: 'sigmoid' })).toThrow(InternalError);
    expect(() => createScheduler('euler', { ...SD15, num_train_timesteps: 'many' })).toThrow(InternalError);
    expect(() => createScheduler('euler', { ...SD15, use_beta_sigmas: true })).toThrow(InternalError);
  });

  it('rejects impossible step counts as user errors', () => {
    for (const name of SAMPLERS) {
      expect(() => createScheduler(name, SD15).setTimesteps(0)).toThrow(UserError);
      expect(() => createScheduler(name, SD15).setTimesteps(2.5)).toThrow(UserError);
    }
    // LCM's schedule is a subset of original_inference_steps (50) points.
    expect(() => createScheduler('lcm', SD15).setTimesteps(51)).toThrow(UserError);
    expect(() => createScheduler('ddim', SD15).setTimesteps(1001)).toThrow(UserError);
  });

  it('refuses to step before setTimesteps', () => {
    for (const name of SAMPLERS) {
      const s = createScheduler(name, SD15);
      expect(() => s.step(new Float32Array(4), 999, new Float32Array(4), [])).toThrow(InternalError);
    }
  });
});
