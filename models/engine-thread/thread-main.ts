import { parentPort, workerData } from 'node:worker_threads';
import { CodedError, UserError } from '../../core/errors.ts';
import type { Engine } from '../engine.ts';
import { loadEngine } from '../pipeline.ts';
import type { FromThread, SerializedError, ThreadInit, ToThread } from './protocol.ts';

/** Runs inside the worker thread: owns the onnxruntime sessions, so their blocking runs never stall the main loop. */

const port = parentPort;
if (port === null) throw new Error('engine thread-main must run in a worker thread');
const init = workerData as ThreadInit;
const send = (message: FromThread) => port.postMessage(message);

function serialize(error: unknown): SerializedError {
  if (error instanceof CodedError) {
    return {
      name: error.name,
      message: error.message,
      code: error.code,
      userFacing: error instanceof UserError,
      ...(error.stack === undefined ? {} : { stack: error.stack }),
    };
  }
  const e = error instanceof Error ? error : new Error(String(error));
  return {
    name: e.name,
    message: e.message,
    userFacing: false,
    ...(e.stack === undefined ? {} : { stack: e.stack }),
  };
}

const aborts = new Map<number, AbortController>();
let engine: Engine | undefined;

try {
  engine = await loadEngine(init.modelDir, {
    ...init.options,
    logger: {
      info: (obj, msg) => send({ type: 'log', level: 'info', obj, msg }),
      warn: (obj, msg) => send({ type: 'log', level: 'warn', obj, msg }),
    },
  });
  send({ type: 'ready', info: engine.info });
} catch (error) {
  send({ type: 'load-error', error: serialize(error) });
  port.close();
}

port.on('message', (message: ToThread) => {
  if (message.type === 'abort') {
    aborts.get(message.id)?.abort();
    return;
  }
  if (message.type === 'exit') {
    // In a worker thread, process.exit ends only this thread. Messages are handled between session
    // runs, never inside one (terminating a thread inside onnxruntime would abort the whole process).
    process.exit(message.code);
  }
  if (message.type === 'close') {
    void (async () => {
      for (const controller of aborts.values()) controller.abort();
      await engine?.close();
      send({ type: 'closed' });
      port.close();
    })();
    return;
  }
  const { id, request } = message;
  // Absent: every step; 0: never; else at most once per that many ms.
  const decodeEveryMs = message.decodedPreviewEveryMs;
  let lastDecodedAt = Number.NEGATIVE_INFINITY;
  const controller = new AbortController();
  aborts.set(id, controller);
  void (async () => {
    try {
      if (engine === undefined) throw new Error('engine is not loaded');
      const result = await engine.generate(request, {
        signal: controller.signal,
        onStep: async (p) => {
          const previews = request.seeds.map((_, k) => p.preview(k));
          // With a tiny decoder, the first image (the one progress shows) is a real TAESD preview, as
          // often as the caller shows previews (each costs a decode); not after the last step, where the
          // final decode follows at once.
          const now = performance.now();
          if (
            p.decodedPreview !== undefined &&
            p.step < p.total &&
            (decodeEveryMs === undefined || (decodeEveryMs > 0 && now - lastDecodedAt >= decodeEveryMs))
          ) {
            lastDecodedAt = now;
            previews[0] = await p.decodedPreview(0);
          }
          send({ type: 'step', id, step: p.step, total: p.total, elapsedMs: p.elapsedMs, previews });
        },
      });
      // Copied, not transferred: image views may share one buffer, and 4 copies cost under a millisecond.
      send({ type: 'result', id, result });
    } catch (error) {
      send({ type: 'error', id, error: serialize(error) });
    } finally {
      aborts.delete(id);
    }
  })();
});
