import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { InferenceSession } from 'onnxruntime-node';
import { type CodedError, ErrorCode, InternalError } from '../core/errors.ts';

/**
 * The one place that maps a device name to an onnxruntime execution provider and its session options.
 * Everything else asks `sessionOptionsFor` and `createSession`; nothing else names an EP.
 */

export const EXECUTION_PROVIDERS = ['cpu', 'cuda', 'webgpu'] as const;
export type ExecutionProviderName = (typeof EXECUTION_PROVIDERS)[number];

export function isExecutionProviderName(value: string): value is ExecutionProviderName {
  return (EXECUTION_PROVIDERS as readonly string[]).includes(value);
}

export interface ProviderOptions {
  /** @defaultValue `'cpu'` */
  readonly executionProvider?: ExecutionProviderName;
  /** GPU index for cuda / webgpu. @defaultValue `0` */
  readonly deviceId?: number;
  /** onnxruntime intra-op threads; 0 = one per core. @defaultValue `0` */
  readonly intraOpThreads?: number;
}

export const DEFAULT_PROVIDER_OPTIONS = {
  executionProvider: 'cpu',
  deviceId: 0,
  intraOpThreads: 0,
} as const satisfies Required<ProviderOptions>;

/** What to tell an operator when a provider's native pieces are missing. */
export const PROVIDER_INSTALL_HINTS: Readonly<Record<ExecutionProviderName, string>> = {
  cpu: 'The CPU provider ships with onnxruntime-node; reinstall dependencies with `npm ci`.',
  cuda:
    'The CUDA provider binaries are not bundled with onnxruntime-node. On a host with an NVIDIA GPU, CUDA 12 and ' +
    "cuDNN 9, run `npm run install:cuda` (onnxruntime-node's CUDA 12 provider installer), or use --ep cpu.",
  webgpu:
    'The WebGPU provider found no usable GPU adapter. It needs Vulkan drivers on Linux (libvulkan1 plus the GPU ' +
    "vendor's Vulkan driver), D3D12 on Windows or Metal on macOS; or use --ep cpu.",
};

/**
 * Session options for a provider. CPU sessions get one thread per core, sequential execution and
 * full graph optimisation: untuned node sessions run 1.2-1.8x slower than python's defaults.
 */
export function sessionOptionsFor(options: ProviderOptions = {}): InferenceSession.SessionOptions {
  const o = { ...DEFAULT_PROVIDER_OPTIONS, ...options };
  const threads = o.intraOpThreads > 0 ? o.intraOpThreads : availableParallelism();
  const base: InferenceSession.SessionOptions = {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    enableCpuMemArena: true,
    enableMemPattern: true,
    // Warnings (e.g. "some nodes were not assigned to the preferred provider") are noise for users.
    logSeverityLevel: 3,
  };
  switch (o.executionProvider) {
    case 'cpu':
      return { ...base, executionProviders: ['cpu'] };
    case 'cuda':
      return { ...base, executionProviders: [{ name: 'cuda', deviceId: o.deviceId }, 'cpu'] };
    case 'webgpu':
      // onnxruntime-node rejects a `deviceId` on the WebGPU EP (there it names a context, not an adapter);
      // the adapter is Dawn's default high-performance one. `checkProviderOptions` refuses deviceId != 0.
      return { ...base, executionProviders: [{ name: 'webgpu' }, 'cpu'] };
  }
}

/** Refuses option combinations a provider cannot honour, before any session is created. */
export function checkProviderOptions(options: ProviderOptions = {}): void {
  const o = { ...DEFAULT_PROVIDER_OPTIONS, ...options };
  if (!Number.isInteger(o.deviceId) || o.deviceId < 0) {
    throw new InternalError(ErrorCode.Config, `deviceId must be a non-negative integer, got ${o.deviceId}`);
  }
  if (!Number.isInteger(o.intraOpThreads) || o.intraOpThreads < 0) {
    throw new InternalError(
      ErrorCode.Config,
      `intraOpThreads must be a non-negative integer (0 = one per core), got ${o.intraOpThreads}`,
    );
  }
  if (o.executionProvider === 'webgpu' && o.deviceId !== 0) {
    throw new InternalError(
      ErrorCode.Config,
      `The webgpu provider cannot pick a GPU by device id (got ${o.deviceId}): onnxruntime-node uses the ` +
        'default high-performance adapter. Use device id 0, or --ep cuda to choose a GPU.',
    );
  }
}

/** onnxruntime-node's native folder for this platform (where optional provider libraries go). */
function nativeBinDir(): string | null {
  try {
    const require = createRequire(import.meta.url);
    const pkg = path.dirname(require.resolve('onnxruntime-node/package.json'));
    return path.join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
  } catch {
    return null;
  }
}

/**
 * Checks what can be checked before creating a session, so a missing provider fails with the install
 * hint instead of onnxruntime's "Failed to load shared library". Returns null when it looks usable.
 */
export function providerProblem(ep: ExecutionProviderName): string | null {
  if (ep !== 'cuda' || process.platform !== 'linux') return null;
  const dir = nativeBinDir();
  if (dir === null) return null;
  const lib = path.join(dir, 'libonnxruntime_providers_cuda.so');
  return existsSync(lib) ? null : `${lib} is missing`;
}

export function providerUnavailable(ep: ExecutionProviderName, detail: string, cause?: unknown): CodedError {
  return new InternalError(
    ErrorCode.ProviderUnavailable,
    `Execution provider "${ep}" is unavailable (${detail}). ${PROVIDER_INSTALL_HINTS[ep]}`,
    { cause, context: { executionProvider: ep } },
  );
}

/** Heuristic on onnxruntime's messages: did the session fail because of the provider, not the model? */
function isProviderFailure(ep: ExecutionProviderName, message: string): boolean {
  if (ep === 'cpu') return false;
  return /shared library|providers_|backend not found|adapter|vulkan|dawn|webgpu|cuda|cudnn|cublas|no available backend/i.test(
    message,
  );
}

/**
 * Creates one session for `modelPath`. Model errors become E_MODEL_LOAD naming the file; provider
 * errors become E_PROVIDER_UNAVAILABLE with the install hint.
 */
export async function createSession(
  modelPath: string,
  options: ProviderOptions = {},
  what = 'model',
): Promise<InferenceSession> {
  const ep = options.executionProvider ?? DEFAULT_PROVIDER_OPTIONS.executionProvider;
  checkProviderOptions(options);
  const problem = providerProblem(ep);
  if (problem !== null) throw providerUnavailable(ep, problem);
  try {
    return await InferenceSession.create(modelPath, sessionOptionsFor(options));
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (isProviderFailure(ep, message)) throw providerUnavailable(ep, firstLine(message), error);
    throw new InternalError(
      ErrorCode.ModelLoad,
      `Could not load the ${what} ${modelPath}: onnxruntime says "${firstLine(message)}". Expected a valid ONNX ` +
        'model (with its external weights file beside it, if it has one).',
      { cause: error, context: { file: modelPath } },
    );
  }
}

function firstLine(message: string): string {
  const line = message.split('\n').find((l) => l.trim() !== '') ?? message;
  return line.length > 400 ? `${line.slice(0, 400)}…` : line.trim();
}
