import type { GeneratorKind } from '../../core/samplers.ts';
import type { NoiseGenerator } from '../types.ts';
import { TorchCudaGenerator, type TorchCudaGeneratorOptions } from './philox.ts';
import { TorchCpuGenerator } from './torchCpu.ts';

export { philox4x32_10, TorchCudaGenerator, type TorchCudaGeneratorOptions } from './philox.ts';
export { TorchCpuGenerator } from './torchCpu.ts';

/**
 * A fresh generator seeded like `torch.Generator(kind).manual_seed(seed)`.
 * Seeds are uint64 (a number up to 2^53-1, or a bigint up to 2^64-1); the CPU generator, like
 * torch's mt19937, only uses the low 32 bits.
 */
export function createGenerator(
  kind: GeneratorKind,
  seed: number | bigint,
  cudaOptions: TorchCudaGeneratorOptions = {},
): NoiseGenerator {
  switch (kind) {
    case 'cpu':
      return new TorchCpuGenerator(seed);
    case 'cuda':
      return new TorchCudaGenerator(seed, cudaOptions);
  }
}
