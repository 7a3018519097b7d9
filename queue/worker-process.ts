import type { Engine } from '../models/engine.ts';
import { type QueueWorker, startWorker, type WorkerOptions } from './worker.ts';

export interface WorkerProcessOptions extends Omit<WorkerOptions, 'engine'> {
  /** Loads the engine once; the process closes it on shutdown. */
  readonly engine: () => Promise<Engine>;
  /**
   * Signals that start a graceful shutdown. A second signal releases running jobs at once.
   * @defaultValue `['SIGTERM', 'SIGINT']`
   */
  readonly signals?: readonly NodeJS.Signals[];
  /** Where signals come from. @defaultValue `process` */
  readonly signalSource?: Pick<NodeJS.Process, 'on' | 'off'>;
}

export interface WorkerProcess {
  readonly worker: QueueWorker;
  /** Resolves once the worker has shut down (after a signal or `stop()`). */
  readonly stopped: Promise<void>;
  /** Same as receiving the first signal. */
  stop(): Promise<void>;
}

/**
 * The `npm run worker` body: starts a worker, and on SIGTERM/SIGINT stops taking jobs, finishes the
 * current one (releasing it to another worker past `shutdownTimeoutMs`), closes the engine and
 * Redis, then resolves `stopped` so the entry point can exit.
 */
export async function runWorkerProcess(options: WorkerProcessOptions): Promise<WorkerProcess> {
  const { signals = ['SIGTERM', 'SIGINT'], signalSource = process, ...workerOptions } = options;
  const worker = await startWorker(workerOptions);
  const { logger } = options;
  let stopping: Promise<void> | undefined;
  let resolveStopped: () => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    resolveStopped = resolve;
  });

  const stop = (releaseNow: boolean): Promise<void> => {
    if (stopping !== undefined) {
      if (releaseNow) void worker.close({ releaseNow: true });
      return stopping;
    }
    stopping = worker
      .close({ releaseNow })
      .catch((error: unknown) => logger.error({ err: error }, 'worker shutdown failed'))
      .finally(() => {
        for (const signal of signals) signalSource.off(signal, onSignal);
        resolveStopped();
      });
    return stopping;
  };

  function onSignal(signal: NodeJS.Signals): void {
    const again = stopping !== undefined;
    logger.info(
      { signal, workerId: worker.id, again },
      again ? 'second signal: releasing jobs now' : 'shutting down',
    );
    void stop(again);
  }
  for (const signal of signals) signalSource.on(signal, onSignal);

  return { worker, stopped, stop: () => stop(false) };
}
