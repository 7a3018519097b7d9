import type { SamplerName } from '../../core/samplers.ts';
import type { Scheduler, SchedulerConfig } from '../types.ts';
import { DdimScheduler } from './ddim.ts';
import { DpmSolverMultistepScheduler } from './dpmSolver.ts';
import { EulerScheduler } from './euler.ts';
import { EulerAncestralScheduler } from './eulerAncestral.ts';
import { LcmScheduler } from './lcm.ts';
import { PndmScheduler } from './pndm.ts';

export { DdimScheduler } from './ddim.ts';
export { DpmSolverMultistepScheduler } from './dpmSolver.ts';
export { EulerScheduler } from './euler.ts';
export { EulerAncestralScheduler } from './eulerAncestral.ts';
export { LcmScheduler } from './lcm.ts';
export { PndmScheduler } from './pndm.ts';

/** The diffusers class behind each sampler name. */
export const SCHEDULER_CLASS: Readonly<Record<SamplerName, string>> = {
  pndm: 'PNDMScheduler',
  ddim: 'DDIMScheduler',
  euler: 'EulerDiscreteScheduler',
  euler_a: 'EulerAncestralDiscreteScheduler',
  dpmpp_2m: 'DPMSolverMultistepScheduler',
  dpmpp_2m_karras: 'DPMSolverMultistepScheduler',
  lcm: 'LCMScheduler',
};

/**
 * The `from_config` keyword overrides that make a sampler name mean one thing whatever the model's
 * config says (e.g. `DPMSolverMultistepScheduler.from_config(config, use_karras_sigmas=True)`).
 */
export const SCHEDULER_OVERRIDES: Readonly<Record<SamplerName, SchedulerConfig>> = {
  pndm: {},
  ddim: {},
  euler: {},
  euler_a: {},
  dpmpp_2m: { algorithm_type: 'dpmsolver++', solver_order: 2, use_karras_sigmas: false },
  dpmpp_2m_karras: { algorithm_type: 'dpmsolver++', solver_order: 2, use_karras_sigmas: true },
  lcm: {},
};

/** Class defaults of the two keys StableDiffusionPipeline patches (absent: the class has no such key). */
const PATCHED_KEY_DEFAULTS: Readonly<Record<string, Readonly<Record<string, unknown>>>> = {
  steps_offset: Object.fromEntries(Object.values(SCHEDULER_CLASS).map((cls) => [cls, 0])),
  clip_sample: { DDIMScheduler: true, LCMScheduler: false },
};

/**
 * The scheduler config StableDiffusionPipeline ends up using for `name`. Its `__init__` rewrites an
 * outdated config of the model's own scheduler: `steps_offset != 1` becomes 1 and `clip_sample: true`
 * becomes false, judged on the effective values (class defaults included). Sampling with that own
 * scheduler (plain `pipe(prompt)`) sees every rewrite; a scheduler swapped in with `X.from_config(...)`
 * sees only rewrites of keys the file itself has, since from_config drops keys that were defaults.
 */
export function pipelineSchedulerConfig(name: SamplerName, config: SchedulerConfig): SchedulerConfig {
  const ownClass = config._class_name;
  const own =
    typeof ownClass === 'string' &&
    SCHEDULER_CLASS[name] === ownClass &&
    Object.keys(SCHEDULER_OVERRIDES[name]).length === 0;
  const patched: Record<string, unknown> = { ...config };
  const rewrite = (key: string, isOutdated: (v: unknown) => boolean, value: unknown) => {
    const inFile = Object.hasOwn(config, key);
    const classDefault = typeof ownClass === 'string' ? PATCHED_KEY_DEFAULTS[key]?.[ownClass] : undefined;
    const effective = inFile ? config[key] : classDefault;
    if (effective === undefined || !isOutdated(effective)) return;
    if (inFile || own) patched[key] = value;
  };
  rewrite('steps_offset', (v) => v !== 1, 1);
  rewrite('clip_sample', (v) => v === true, false);
  return patched;
}

/**
 * Builds the scheduler for `name` from a model's `scheduler/scheduler_config.json`, the way
 * `SchedulerClass.from_config(config, **SCHEDULER_OVERRIDES[name])` does in diffusers. Call
 * `setTimesteps(steps)` on the result before sampling; one instance serves one sampling run at a time.
 */
export function createScheduler(name: SamplerName, config: SchedulerConfig): Scheduler {
  const overrides = SCHEDULER_OVERRIDES[name];
  switch (name) {
    case 'pndm':
      return new PndmScheduler(name, config, overrides);
    case 'ddim':
      return new DdimScheduler(name, config, overrides);
    case 'euler':
      return new EulerScheduler(name, config, overrides);
    case 'euler_a':
      return new EulerAncestralScheduler(name, config, overrides);
    case 'dpmpp_2m':
    case 'dpmpp_2m_karras':
      return new DpmSolverMultistepScheduler(name, config, overrides);
    case 'lcm':
      return new LcmScheduler(name, config, overrides);
  }
}
