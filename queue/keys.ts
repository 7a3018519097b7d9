import type { Surface } from '../core/jobspec.ts';
import { DEFAULT_MODEL_NAME } from '../core/models.ts';

/** BullMQ queue that carries generation jobs of the model named `default` (and of specs without a model). */
export const GENERATE_QUEUE = 'generate';

/**
 * The BullMQ queue of one served model: only workers that serve the model take from it. The model
 * named `default` (a deployment without MODELS) keeps the queue it always had, so its queued jobs
 * survive an upgrade.
 */
export function generateQueueName(model: string | undefined): string {
  return model === undefined || model === DEFAULT_MODEL_NAME ? GENERATE_QUEUE : `${GENERATE_QUEUE}-${model}`;
}

/** BullMQ queue that carries finished jobs to one chat surface. */
export function deliveryQueueName(surface: Surface): string {
  return `deliver-${surface}`;
}

/**
 * Every Redis key the queue layer owns besides BullMQ's own. All start with the configured prefix,
 * so a Cluster hash-tag prefix (`{imagine}`) keeps them in the same slot as the BullMQ keys.
 */
export interface QueueKeys {
  readonly prefix: string;
  /** Hash holding one grid record. */
  record(id: string): string;
  readonly recordPrefix: string;
  /** `step/total` of a running job (lossy, short TTL). */
  progress(id: string): string;
  grid(id: string): string;
  image(id: string, index: number): string;
  /**
   * An uploaded init image (raw bytes), named by its SHA-256 so one upload used by many jobs is stored
   * once; it lives as long as the records that use it (RECORD_TTL, renewed by each job).
   */
  initImage(sha256: string): string;
  /** Set of a user's unfinished job ids (the per-user cap). */
  userJobs(surface: Surface, user: string): string;
  /** Sorted set of all unfinished job ids, scored by submit time (the global depth cap). */
  readonly unfinished: string;
  /** Prefix of every PNG key (`<resultPrefix><id>:grid`, `<resultPrefix><id>:img:<k>`), for Lua. */
  readonly resultPrefix: string;
  /** Sorted set of job ids whose PNGs are stored, scored by when they expire (oldest first). */
  readonly imageIndex: string;
  /** Hash: job id → `bytes:imageCount` of its stored PNGs. */
  readonly imageSizes: string;
  /** Total bytes of stored PNGs (the sum of imageSizes). */
  readonly imageBytes: string;
  /** Pub/sub channel on which workers announce re-rendered PNGs (`{id, ok, reason?}`). */
  readonly renderedChannel: string;
  /** Idempotency record of one delivery side effect. */
  once(id: string, surface: Surface, step: string): string;
  /** Running averages the worker keeps (job duration) for retry-after estimates. */
  readonly stats: string;
  /** Pub/sub channel carrying ids of jobs to cancel. */
  readonly cancelChannel: string;
  /** Pub/sub channel carrying progress events for one surface. */
  progressChannel(surface: Surface): string;
  /** Prefix of BullMQ's job hashes on the generate queue (`<prefix>:generate:<id>`). */
  readonly generateJobPrefix: string;
  /** Prefix of BullMQ's job hashes on one model's generate queue. */
  jobPrefixOf(model: string | undefined): string;
  /** Prefix of one model queue's fair-sharing bookkeeping (queue/fairness.ts). */
  fairPrefix(model: string | undefined): string;
  /** Set of the ids of workers that said they serve `model` (each backed by `servedBy`, which expires). */
  served(model: string): string;
  /** A worker's announcement that it serves `model` (value: the model's revision), with a TTL. */
  servedBy(model: string, workerId: string): string;
  /** The generation defaults the workers serving `model` announce (JSON), with the same TTL. */
  servedDefaults(model: string): string;
}

export function queueKeys(prefix: string): QueueKeys {
  const base = `${prefix}:im`;
  return {
    prefix,
    record: (id) => `${base}:rec:${id}`,
    recordPrefix: `${base}:rec:`,
    progress: (id) => `${base}:prog:${id}`,
    grid: (id) => `${base}:res:${id}:grid`,
    resultPrefix: `${base}:res:`,
    imageIndex: `${base}:images`,
    imageSizes: `${base}:images:sizes`,
    imageBytes: `${base}:images:bytes`,
    renderedChannel: `${base}:rendered`,
    image: (id, index) => `${base}:res:${id}:img:${index}`,
    initImage: (sha256) => `${base}:init:${sha256}`,
    userJobs: (surface, user) => `${base}:user:${surface}:${user}`,
    unfinished: `${base}:unfinished`,
    once: (id, surface, step) => `${base}:once:${id}:${surface}:${step}`,
    stats: `${base}:stats`,
    cancelChannel: `${base}:cancel`,
    progressChannel: (surface) => `${base}:progress:${surface}`,
    generateJobPrefix: `${prefix}:${GENERATE_QUEUE}:`,
    jobPrefixOf: (model) => `${prefix}:${generateQueueName(model)}:`,
    fairPrefix: (model) => `${base}:fair:${generateQueueName(model)}:`,
    served: (model) => `${base}:served:${model}`,
    servedBy: (model, workerId) => `${base}:served:${model}:${workerId}`,
    servedDefaults: (model) => `${base}:served-defaults:${model}`,
  };
}
