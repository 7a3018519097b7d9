import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type {
  DeliveryOutcome,
  JobOutcome,
  QueueCounts,
  QueueMetrics,
  QueuePhase,
  SubmitOutcome,
} from '../../queue/index.ts';

/**
 * Prometheus metrics for the whole process. `Metrics` implements the queue's `QueueMetrics` hook, so
 * the same object is handed to the jobs client and the worker; `/metrics` renders its registry.
 */

/** Phases of a job as exported: the worker's phases plus `deliver` (posting the result to a chat). */
export const PHASE_LABELS = {
  queueWait: 'queue_wait',
  textEncode: 'text_encode',
  denoise: 'denoise',
  decode: 'decode',
  compose: 'compose',
  store: 'store',
} as const satisfies Record<QueuePhase, string>;

const ALL_PHASES = [...Object.values(PHASE_LABELS), 'deliver'] as const;
const JOB_OUTCOMES = ['done', 'failed', 'cancelled'] as const satisfies readonly JobOutcome[];
const SUBMIT_OUTCOMES = [
  'accepted',
  'duplicate',
  'refused_user_cap',
  'refused_queue_full',
  'invalid',
] as const satisfies readonly SubmitOutcome[];
const DELIVERY_OUTCOMES = [
  'delivered',
  'retry',
  'retry_later',
  'gave_up',
] as const satisfies readonly DeliveryOutcome[];

export interface Metrics extends QueueMetrics {
  readonly registry: Registry;
  readonly contentType: string;
  /** Time to post a result on a chat surface (the `deliver` phase). */
  observeDeliver(surface: string, ms: number): void;
  /** Where queue depth and jobs-by-status come from; unset, those gauges are empty. */
  setQueueCounts(source: (() => Promise<QueueCounts>) | undefined): void;
  render(): Promise<string>;
}

export interface MetricsOptions {
  /** @defaultValue `'imagine_'` */
  readonly prefix?: string;
  /** Node process metrics (heap, event loop lag, fds). @defaultValue true */
  readonly processMetrics?: boolean;
}

const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const STEP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const COUNT_NAMES = ['waiting', 'delayed', 'prioritized', 'active', 'completed', 'failed'] as const;

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const prefix = options.prefix ?? 'imagine_';
  const registry = new Registry();
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry, prefix });

  let source: (() => Promise<QueueCounts>) | undefined;
  // Both gauges read the same counts; one scrape asks the queue once.
  let pending: Promise<QueueCounts | undefined> | undefined;
  const readCounts = (): Promise<QueueCounts | undefined> => {
    if (source === undefined) return Promise.resolve(undefined);
    pending ??= source()
      .catch(() => undefined)
      .finally(() => {
        pending = undefined;
      });
    return pending;
  };

  new Gauge({
    name: `${prefix}queue_readable`,
    help: '1 when the last scrape could read the queue counts from Redis, else 0 (the queue gauges are then stale).',
    registers: [registry],
    async collect() {
      this.set(source !== undefined && (await readCounts()) !== undefined ? 1 : 0);
    },
  });
  new Gauge({
    name: `${prefix}queue_depth`,
    help: 'Jobs waiting to run in the generation queue (waiting + delayed + prioritized).',
    registers: [registry],
    async collect() {
      const c = await readCounts();
      if (c === undefined) return;
      this.set((c.waiting ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0));
    },
  });
  new Gauge({
    name: `${prefix}queue_jobs`,
    help: 'Jobs in the generation queue by status.',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      const c = await readCounts();
      if (c === undefined) return;
      for (const status of COUNT_NAMES) this.set({ status }, c[status] ?? 0);
    },
  });
  const phase = new Histogram({
    name: `${prefix}job_phase_seconds`,
    help: 'Job duration by phase: queue_wait, text_encode, denoise, decode, compose, store, deliver.',
    labelNames: ['phase'],
    buckets: SECONDS_BUCKETS,
    registers: [registry],
  });
  const step = new Histogram({
    name: `${prefix}denoise_step_seconds`,
    help: 'Time of one denoising step (UNet, guidance and scheduler) for the whole batch.',
    buckets: STEP_BUCKETS,
    registers: [registry],
  });
  const finished = new Counter({
    name: `${prefix}jobs_finished_total`,
    help: 'Jobs that reached a final state, by state (done, failed, cancelled).',
    labelNames: ['state'],
    registers: [registry],
  });
  const submissions = new Counter({
    name: `${prefix}submissions_total`,
    help: 'Submitted jobs by outcome (accepted, duplicate, refused_user_cap, refused_queue_full, invalid).',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const deliveries = new Counter({
    name: `${prefix}deliveries_total`,
    help: 'Delivery attempts to chat surfaces by outcome (delivered, retry, retry_later, gave_up).',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const retries = new Counter({
    name: `${prefix}job_retries_total`,
    help: 'Generation jobs retried after a transient error.',
    registers: [registry],
  });
  const deliverBySurface = new Histogram({
    name: `${prefix}deliver_seconds`,
    help: 'Time to post a result on a chat surface, by surface.',
    labelNames: ['surface'],
    buckets: SECONDS_BUCKETS,
    registers: [registry],
  });
  // Series exist from the start, so dashboards show 0 rather than "no data".
  for (const p of ALL_PHASES) phase.zero({ phase: p });
  for (const s of JOB_OUTCOMES) finished.inc({ state: s }, 0);
  for (const o of SUBMIT_OUTCOMES) submissions.inc({ outcome: o }, 0);
  for (const o of DELIVERY_OUTCOMES) deliveries.inc({ outcome: o }, 0);
  retries.inc(0);

  const seconds = (ms: number) => (Number.isFinite(ms) && ms >= 0 ? ms / 1000 : undefined);
  return {
    registry,
    contentType: registry.contentType,
    observePhase(p, ms) {
      const s = seconds(ms);
      if (s !== undefined) phase.observe({ phase: PHASE_LABELS[p] }, s);
    },
    stepTime(ms) {
      const s = seconds(ms);
      if (s !== undefined) step.observe(s);
    },
    jobFinished(outcome) {
      finished.inc({ state: outcome });
    },
    retry() {
      retries.inc();
    },
    submit(outcome) {
      submissions.inc({ outcome });
    },
    delivery(outcome) {
      deliveries.inc({ outcome });
    },
    observeDeliver(surface, ms) {
      const s = seconds(ms);
      if (s === undefined) return;
      phase.observe({ phase: 'deliver' }, s);
      deliverBySurface.observe({ surface }, s);
    },
    setQueueCounts(next) {
      source = next;
    },
    render: () => registry.metrics(),
  };
}
