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
 * (lock renewals, progress, health checks). Same `Engine` interface, same results. A thread that dies
 * (out of memory, a crash) fails the batches it was running and is started again on the next request.
 */
export async function loadEngineInThread(modelDir: string, options: EngineOptions = {}): Promise<Engine> {
  const { logger, ...threadOptions } = options;
  const init: ThreadInit = { modelDir, options: threadOptions };
  const spawn = () => startThread(init, logger);
  const first = await spawn();
  return new ThreadEngine(spawn, first, logger);
}

interface StartedThread {
  readonly worker: Worker;
  readonly info: ModelInfo;
}

async function startThread(init: ThreadInit, logger: EngineLogger | undefined): Promise<StartedThread> {
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
  return { worker, info };
}

/**
 * Test hook: ends the engine's current thread as a crash would (not a close), between session runs.
 * (Worker.terminate() during an onnxruntime run aborts the whole process, so it is never used mid-run.)
 */
export const TERMINATE_THREAD = Symbol('terminate engine thread');

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
  readonly #spawn: () => Promise<StartedThread>;
  readonly #logger: EngineLogger | undefined;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  /** The live thread; undefined after it died, until the next request starts another. */
  #worker: Worker | undefined;
  #respawning: Promise<Worker> | undefined;
  #closed: Promise<void> | undefined;

  constructor(spawn: () => Promise<StartedThread>, first: StartedThread, logger: EngineLogger | undefined) {
    this.#spawn = spawn;
    this.info = first.info;
    this.#logger = logger;
    this.#adopt(first.worker);
  }

  generate(request: GenerateRequest, options: GenerateOptions = {}): Promise<GenerateResult> {
    if (this.#closed !== undefined) {
      return Promise.reject(new InternalError(ErrorCode.Inference, 'the engine is closed'));
    }
    const { signal } = options;
    if (signal?.aborted === true) {
      return Promise.reject(new CodedError(ErrorCode.Cancelled, 'generation cancelled'));
    }
    return this.#live().then(
      (worker) =>
        new Promise<GenerateResult>((resolve, reject) => {
          const id = this.#nextId++;
          const onAbort = () => worker.postMessage({ type: 'abort', id } satisfies ToThread);
          signal?.addEventListener('abort', onAbort, { once: true });
          const done = () => signal?.removeEventListener('abort', onAbort);
          this.#pending.set(id, {
            resolve: (r) => {
              done();
              resolve(r);
            },
            reject: (e) => {
              done();
              reject(e);
            },
            options,
          });
          const every = options.decodedPreviewEveryMs;
          worker.postMessage({
            type: 'generate',
            id,
            request,
            ...(every === undefined ? {} : { decodedPreviewEveryMs: every }),
          } satisfies ToThread);
        }),
    );
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      const worker = this.#worker ?? (await this.#respawning?.catch(() => undefined));
      if (worker !== undefined) {
        const closed = new Promise<void>((resolve) => {
          worker.on('message', (m: FromThread) => {
            if (m.type === 'closed') resolve();
          });
          worker.once('exit', () => resolve());
        });
        worker.postMessage({ type: 'close' } satisfies ToThread);
        await closed;
        await worker.terminate();
      }
      this.#worker = undefined;
    })();
    return this.#closed;
  }

  [TERMINATE_THREAD](): void {
    this.#worker?.postMessage({ type: 'exit', code: 70 } satisfies ToThread);
  }

  /** The live thread, starting a new one (loading the model again) after a crash. */
  #live(): Promise<Worker> {
    if (this.#worker !== undefined) return Promise.resolve(this.#worker);
    this.#respawning ??= this.#spawn().then(
      ({ worker }) => {
        this.#respawning = undefined;
        if (this.#closed !== undefined) {
          void worker.terminate();
          throw new InternalError(ErrorCode.Inference, 'the engine is closed');
        }
        this.#logger?.info({}, 'engine thread restarted');
        this.#adopt(worker);
        return worker;
      },
      (error: unknown) => {
        this.#respawning = undefined;
        throw error;
      },
    );
    return this.#respawning;
  }

  #adopt(worker: Worker): void {
    this.#worker = worker;
    worker.on('message', (message: FromThread) => this.#onMessage(message));
    worker.on('error', (error) => this.#died(worker, error));
    worker.on('exit', (code) => this.#died(worker, new Error(`engine thread exited with code ${code}`)));
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

  /** A thread ended: fail what it was running (retryable), forget it; the next request starts another. */
  #died(worker: Worker, error: Error): void {
    if (this.#worker !== worker) return;
    this.#worker = undefined;
    const wrapped =
      this.#closed === undefined
        ? new InternalError(ErrorCode.Inference, `engine thread died: ${error.message}`, { cause: error })
        : new InternalError(ErrorCode.Inference, 'the engine was closed during generation');
    if (this.#closed === undefined) this.#logger?.warn({ err: error }, 'engine thread died');
    for (const pending of this.#pending.values()) pending.reject(wrapped);
    this.#pending.clear();
  }
}
