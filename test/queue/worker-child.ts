/**
 * A generation worker in its own process, for crash tests: started with a JSON config in argv[2],
 * prints `ready` once it takes jobs, and one JSON line per step so the parent can kill it mid-job.
 * Run: node --import tsx test/queue/worker-child.ts '{"url":"redis://…","prefix":"…"}'
 */

import type { QueueLogger } from '../../queue/logger.ts';
import { createNoopEngine } from '../../queue/noop-engine.ts';
import { runWorkerProcess } from '../../queue/worker-process.ts';

interface ChildConfig {
  url: string;
  prefix: string;
  workerId: string;
  stepDelayMs?: number;
  stalledIntervalMs?: number;
  lockDurationMs?: number;
  /** When set, the worker derives its lock and stall check from it (as `npm run worker` does). */
  takeoverMs?: number;
  shutdownTimeoutMs?: number;
}

const config = JSON.parse(process.argv[2] ?? '{}') as ChildConfig;
const write = (line: object): void => {
  process.stdout.write(`${JSON.stringify(line)}\n`);
};
const logger: QueueLogger = {
  debug: () => {},
  info: (obj, msg) => write({ log: 'info', msg, ...obj }),
  warn: (obj, msg) => write({ log: 'warn', msg, ...obj }),
  error: (obj, msg) => write({ log: 'error', msg, ...obj }),
};

const engine = createNoopEngine({ stepDelayMs: config.stepDelayMs ?? 50 });
const wrapped = {
  info: engine.info,
  close: () => engine.close(),
  generate: (
    request: Parameters<typeof engine.generate>[0],
    options: Parameters<typeof engine.generate>[1] = {},
  ) =>
    engine.generate(request, {
      ...options,
      onStep: async (progress) => {
        write({ event: 'step', step: progress.step, total: progress.total });
        await options.onStep?.(progress);
      },
    }),
};

const proc = await runWorkerProcess({
  connection: config.url,
  prefix: config.prefix,
  workerId: config.workerId,
  engine: async () => wrapped,
  ...(config.takeoverMs === undefined
    ? { stalledIntervalMs: config.stalledIntervalMs ?? 500, lockDurationMs: config.lockDurationMs ?? 1000 }
    : { takeoverMs: config.takeoverMs }),
  shutdownTimeoutMs: config.shutdownTimeoutMs ?? 10_000,
  previewEveryMs: 0,
  logger,
});
write({ event: 'ready', workerId: proc.worker.id });
await proc.stopped;
write({ event: 'stopped' });
