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
