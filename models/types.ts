import type { GeneratorKind, SamplerName } from '../core/samplers.ts';

/**
 * A seeded normal-distribution source that reproduces one torch generator bit for bit.
 * State carries across calls, exactly like calling `torch.randn(shape, generator=g)` repeatedly.
 */
export interface NoiseGenerator {
  readonly kind: GeneratorKind;
  /** Equivalent of `torch.randn((count,), generator=g)` in float32 (only the element count matters to torch). */
  randn(count: number): Float32Array;
}

/** `scheduler/scheduler_config.json` of a diffusers model, as read from disk (snake_case keys kept). */
export type SchedulerConfig = Readonly<Record<string, unknown>>;

/**
 * A diffusers scheduler, built the way `SchedulerClass.from_config(config)` builds it.
 * Samples are flat float32 arrays holding a batch of `batch` images, image-major ([B,4,h,w]).
 */
export interface Scheduler {
  readonly name: SamplerName;
  /** Call once before sampling; fills `timesteps` (and sigmas where the scheduler has them). */
  setTimesteps(steps: number): void;
  readonly timesteps: readonly number[];
  /** Null for schedulers without sigmas. */
  readonly sigmas: readonly number[] | null;
  readonly initNoiseSigma: number;
  /** diffusers' `scale_model_input(sample, t)`; returns a new array (or the input when it is the identity). */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array;
  /**
   * diffusers' `set_begin_index(i)` (image-to-image starts at `timesteps[i]`): the step index the first
   * `scaleModelInput`/`step` uses. Schedulers that index by timestep (PNDM, DDIM) have no begin index
   * in diffusers and ignore it. `setTimesteps` clears it, as diffusers does.
   */
  setBeginIndex(index: number): void;
  /**
   * diffusers' `add_noise(original, noise, timestep)` for image-to-image's start latents, at the first
   * kept timestep (after `setBeginIndex`); returns a new array, image-major like `sample`.
   */
  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array;
  /**
   * diffusers' `step(model_output, t, sample, generator=generators).prev_sample`.
   * `generators[k]` supplies the per-step noise of image k (ancestral / LCM samplers only), drawing
   * `sample.length / generators.length` values each, as diffusers does with a list of generators.
   */
  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    generators: readonly NoiseGenerator[],
  ): Float32Array;
}
