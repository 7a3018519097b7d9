/**
 * A chat-side delivery consumer in its own process, for the "crash after posting" test: it performs
 * the `post` step (an INCR in Redis standing in for the chat API call), prints `posted`, then hangs
 * as if it died before acknowledging, so the parent can kill -9 it.
 */
import { Redis } from 'ioredis';
import { createJobs } from '../../queue/jobs.ts';
import { silentLogger } from '../../queue/logger.ts';

interface ChildConfig {
  url: string;
  prefix: string;
  counterKey: string;
  lockDurationMs: number;
}

const config = JSON.parse(process.argv[2] ?? '{}') as ChildConfig;
const redis = new Redis(config.url);
const jobs = createJobs({
  connection: config.url,
  prefix: config.prefix,
  logger: silentLogger,
  // Same stall interval as the parent: BullMQ throttles stall checks per queue, not per process.
  delivery: { lockDurationMs: config.lockDurationMs, stalledIntervalMs: 300 },
});
jobs.onDelivery('discord', async (event, ctx) => {
  await ctx.once('post', async () => {
    await redis.incr(config.counterKey);
    return `posted-by-child-${event.record.id}`;
  });
  process.stdout.write(`${JSON.stringify({ event: 'posted', id: event.record.id, attempt: ctx.attempt })}\n`);
  // Never acknowledge: the parent kills this process here.
  await new Promise(() => {});
});
process.stdout.write(`${JSON.stringify({ event: 'ready' })}\n`);
