/** Sampler (scheduler) names accepted everywhere; each maps to a diffusers scheduler class. */
export const SAMPLERS = ['pndm', 'ddim', 'euler', 'euler_a', 'dpmpp_2m', 'dpmpp_2m_karras', 'lcm'] as const;
export type SamplerName = (typeof SAMPLERS)[number];

/** Samplers that draw fresh noise at every step (from the image's own generator). */
export const STOCHASTIC_SAMPLERS: ReadonlySet<SamplerName> = new Set<SamplerName>(['euler_a', 'lcm']);

export function isSamplerName(value: string): value is SamplerName {
  return (SAMPLERS as readonly string[]).includes(value);
}

/** Which random generator reproduces which torch generator: `cpu` (mt19937) or `cuda` (Philox4x32-10). */
export const GENERATOR_KINDS = ['cpu', 'cuda'] as const;
export type GeneratorKind = (typeof GENERATOR_KINDS)[number];
