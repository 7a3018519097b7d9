import { randomBytes } from 'node:crypto';
import { createServer as createNetServer } from 'node:net';
import type { JobSpecInput, Surface } from '../../core/jobspec.ts';
import type { QueueLogger } from '../../queue/logger.ts';
import type { QueueMetrics } from '../../queue/metrics.ts';
import type { DeliveryContext, DeliveryEvent, Jobs } from '../../queue/types.ts';

/** A valid 4-image spec; each call gets a fresh interaction id unless one is given. */
export function makeSpec(
  overrides: {
    interactionId?: string;
    user?: string;
    surface?: Surface;
    steps?: number;
    size?: number;
    prompts?: string[];
    seeds?: number[];
  } = {},
): JobSpecInput {
  const prompts = overrides.prompts ?? ['a red fox', 'a red fox', 'a red fox', 'a red fox'];
  return {
    v: 1,
    kind: 'imagine',
    prompts,
    seeds: overrides.seeds ?? prompts.map((_, k) => 1000 + k),
    negative: 'blurry',
    sampler: 'euler_a',
    steps: overrides.steps ?? 4,
    guidance: 7.5,
    width: overrides.size ?? 64,
    height: overrides.size ?? 64,
    origin: {
      surface: overrides.surface ?? 'discord',
      user: overrides.user ?? 'user-1',
      channel: 'channel-1',
      interactionId: overrides.interactionId ?? `i${randomBytes(6).toString('hex')}`,
      messageRef: { token: 'tok' },
    },
    requestedAt: Date.now(),
  };
}

export interface LogEntry {
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly obj: Record<string, unknown>;
  readonly msg: string;
}

/** A logger that keeps every entry, so tests can assert what was reported. */
export function captureLogger(): QueueLogger & { entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  const at =
    (level: LogEntry['level']) =>
    (obj: object, msg: string): void => {
      entries.push({ level, obj: obj as Record<string, unknown>, msg });
    };
  return { entries, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs = 15_000,
  everyMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== null && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

export interface Delivered {
  readonly event: DeliveryEvent;
  readonly attempt: number;
  readonly at: number;
}

/** Subscribes a recording handler; `posts` counts the `post` side effects per job id. */
export function recordDeliveries(
  jobs: Jobs,
  surface: Surface = 'discord',
  behaviour?: (event: DeliveryEvent, ctx: DeliveryContext) => Promise<void>,
) {
  const delivered: Delivered[] = [];
  const posts = new Map<string, number>();
  const subscription = jobs.onDelivery(surface, async (event, ctx) => {
    await behaviour?.(event, ctx);
    await ctx.once('post', async () => {
      posts.set(event.record.id, (posts.get(event.record.id) ?? 0) + 1);
      return `message-${event.record.id}`;
    });
    delivered.push({ event, attempt: ctx.attempt, at: Date.now() });
  });
  return {
    delivered,
    posts,
    subscription,
    byId: (id: string) => delivered.filter((d) => d.event.record.id === id),
  };
}

/** Metrics that keep every call, as `name:arg` strings (numbers dropped). */
export function recordMetrics(): QueueMetrics & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    observePhase: (phase, ms) => {
      if (Number.isFinite(ms) && ms >= 0) calls.push(`phase:${phase}`);
    },
    stepTime: (ms) => {
      if (Number.isFinite(ms) && ms >= 0) calls.push('step');
    },
    jobFinished: (outcome) => void calls.push(`finished:${outcome}`),
    retry: () => void calls.push('retry'),
    submit: (outcome) => void calls.push(`submit:${outcome}`),
    delivery: (outcome) => void calls.push(`delivery:${outcome}`),
  };
}

/**
 * Keeps a dead Redis's port while it is down: a listener that drops every connection, so clients
 * still find nothing that answers, and no other test's server (parallel tests take free ports) can
 * take the port before the test restarts Redis on it. `release()` right before that restart.
 */
export async function holdPort(port: number): Promise<{ release(): Promise<void> }> {
  const server = createNetServer((socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    release: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
      }),
  };
}
