import type { GenerateRequest, GenerateResult, ModelInfo, RgbImage } from '../engine.ts';
import type { EngineOptions } from '../pipeline.ts';

/** Messages between the thread-hosted engine and its proxy. Structured-clone safe (no functions). */

export interface ThreadInit {
  readonly modelDir: string;
  readonly options: Omit<EngineOptions, 'logger'>;
}

export type ToThread =
  | {
      readonly type: 'generate';
      readonly id: number;
      readonly request: GenerateRequest;
      readonly decodedPreviewEveryMs?: number;
    }
  | { readonly type: 'abort'; readonly id: number }
  | { readonly type: 'close' }
  /** Ends the thread at once as a crash would (tests of the restart path). Handled between runs. */
  | { readonly type: 'exit'; readonly code: number };

export interface SerializedError {
  readonly name: string;
  readonly message: string;
  readonly code?: string;
  readonly userFacing: boolean;
  readonly stack?: string;
}

export type FromThread =
  | { readonly type: 'ready'; readonly info: ModelInfo }
  | { readonly type: 'load-error'; readonly error: SerializedError }
  | {
      readonly type: 'step';
      readonly id: number;
      readonly step: number;
      readonly total: number;
      readonly elapsedMs: number;
      /** Latent previews of every image of the batch (a few KB each at latent resolution); the first is a
       * full-size TAESD decode when the model has a tiny decoder. */
      readonly previews: readonly RgbImage[];
    }
  | { readonly type: 'result'; readonly id: number; readonly result: GenerateResult }
  | { readonly type: 'error'; readonly id: number; readonly error: SerializedError }
  | { readonly type: 'log'; readonly level: 'info' | 'warn'; readonly obj: object; readonly msg: string }
  | { readonly type: 'closed' };
