import { Worker } from 'node:worker_threads';
import { CodedError, ErrorCode, InternalError, UserError } from '../../core/errors.ts';
import type {
  Engine,
  GenerateOptions,
  GenerateRequest,
  GenerateResult,
  ModelInfo,
  RgbImage,
} from '../engine.ts';
import type { EngineLogger, EngineOptions } from '../pipeline.ts';
import type { FromThread, SerializedError, ThreadInit, ToThread } from './protocol.ts';

/**
 * The engine, hosted in a worker thread. onnxruntime-node runs each session synchronously on the
 * calling thread; an SD UNet call can take seconds on CPU, which would stall the worker's event loop
 * (lock renewals, progress, health checks). Same `Engine` interface, same results.
 */
export async function loadEngineInThread(modelDir: string, options: EngineOptions = {}): Promise<Engine> {
  const { logger, ...threadOptions } = options;
  const init: ThreadInit = { modelDir, options: threadOptions };
  const worker = new Worker(new URL('./thread-entry.js', import.meta.url), { workerData: init });
  const info = await new Promise<ModelInfo>((resolve, reject) => {
    const onMessage = (message: FromThread) => {
      if (message.type === 'log') return forwardLog(logger, message);
      cleanup();
      if (message.type === 'ready') resolve(message.info);
      else if (message.type === 'load-error') reject(deserialize(message.error));
      else reject(new InternalError(ErrorCode.ModelLoad, `engine thread sent ${message.type} before ready`));
    };
    const onError = (error: Error) => {
      cleanup();
      reject(
        new InternalError(ErrorCode.ModelLoad, `engine thread failed to start: ${error.message}`, {
          cause: error,
        }),
      );
    };
    const onExit = (code: number) => {
      cleanup();
      reject(new InternalError(ErrorCode.ModelLoad, `engine thread exited (code ${code}) while loading`));
    };
    const cleanup = () => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  }).catch(async (error: unknown) => {
    await worker.terminate();
    throw error;
  });
  return new ThreadEngine(worker, info, logger);
}

function forwardLog(logger: EngineLogger | undefined, message: Extract<FromThread, { type: 'log' }>): void {
  logger?.[message.level](message.obj, message.msg);
}

function deserialize(error: SerializedError): CodedError {
  const code = (Object.values(ErrorCode) as string[]).includes(error.code ?? '')
    ? (error.code as ErrorCode)
    : ErrorCode.Inference;
  const restored = error.userFacing
    ? new UserError(code, error.message)
    : new InternalError(code, error.message, { context: { threadStack: error.stack } });
  return restored;
}

interface Pending {
  readonly resolve: (result: GenerateResult) => void;
  readonly reject: (error: unknown) => void;
  readonly options: GenerateOptions;
}

class ThreadEngine implements Engine {
  readonly info: ModelInfo;
  readonly #worker: Worker;
  readonly #logger: EngineLogger | undefined;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #closed: Promise<void> | undefined;
  #dead: Error | undefined;

  constructor(worker: Worker, info: ModelInfo, logger: EngineLogger | undefined) {
    this.#worker = worker;
    this.info = info;
    this.#logger = logger;
    worker.on('message', (message: FromThread) => this.#onMessage(message));
    worker.on('error', (error) => this.#fail(error));
    worker.on('exit', (code) => this.#fail(new Error(`engine thread exited with code ${code}`)));
  }

  generate(request: GenerateRequest, options: GenerateOptions = {}): Promise<GenerateResult> {
    if (this.#closed !== undefined || this.#dead !== undefined) {
      return Promise.reject(new InternalError(ErrorCode.Inference, 'the engine is closed'));
    }
    const id = this.#nextId++;
    return new Promise<GenerateResult>((resolve, reject) => {
      const { signal } = options;
      if (signal?.aborted === true) {
        reject(new CodedError(ErrorCode.Cancelled, 'generation cancelled'));
        return;
      }
      const onAbort = () => this.#post({ type: 'abort', id });
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(id, {
        resolve: (r) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(r);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
        options,
      });
      this.#post({ type: 'generate', id, request });
    });
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      if (this.#dead === undefined) {
        const closed = new Promise<void>((resolve) => {
          const onMessage = (m: FromThread) => {
            if (m.type === 'closed') resolve();
          };
          this.#worker.on('message', onMessage);
          this.#worker.once('exit', () => resolve());
        });
        this.#post({ type: 'close' });
        await closed;
      }
      await this.#worker.terminate();
    })();
    return this.#closed;
  }

  #post(message: ToThread): void {
    this.#worker.postMessage(message);
  }

  #onMessage(message: FromThread): void {
    switch (message.type) {
      case 'log':
        forwardLog(this.#logger, message);
        return;
      case 'step': {
        const pending = this.#pending.get(message.id);
        const onStep = pending?.options.onStep;
        if (onStep === undefined) return;
        const previews = message.previews;
        const preview = (index = 0): RgbImage => {
          const image = previews[index];
          if (image === undefined) throw new RangeError(`no image ${index} in this batch`);
          return image;
        };
        // Progress is advisory: a throwing callback must not break generation.
        Promise.resolve()
          .then(() =>
            onStep({ step: message.step, total: message.total, elapsedMs: message.elapsedMs, preview }),
          )
          .catch((error: unknown) => this.#logger?.warn({ err: error }, 'onStep callback failed'));
        return;
      }
      case 'result':
        this.#settle(message.id)?.resolve(message.result);
        return;
      case 'error':
        this.#settle(message.id)?.reject(deserialize(message.error));
        return;
      default:
        return;
    }
  }

  #settle(id: number): Pending | undefined {
    const pending = this.#pending.get(id);
    this.#pending.delete(id);
    return pending;
  }

  #fail(error: Error): void {
    if (this.#dead !== undefined) return;
    this.#dead = error;
    const wrapped =
      this.#closed === undefined
        ? new InternalError(ErrorCode.Inference, `engine thread died: ${error.message}`, { cause: error })
        : new InternalError(ErrorCode.Inference, 'the engine was closed during generation');
    for (const pending of this.#pending.values()) pending.reject(wrapped);
    this.#pending.clear();
  }
}
