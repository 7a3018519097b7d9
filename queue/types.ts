import { ErrorCode, InternalError } from '../core/errors.ts';
import type { JobSpec, JobSpecInput, Surface } from '../core/jobspec.ts';

/**
 * The interface between queue/ and bots/. The chat side submits specs and receives durable
 * deliveries; it never sees BullMQ. Fakes for tests implement this same interface.
 */

export const JOB_STATES = ['queued', 'running', 'done', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

export interface SubmitResult {
  readonly jobId: string;
  readonly seeds: readonly number[];
  /** Jobs ahead of this one (0 = next to run). */
  readonly position: number;
  /** True when the id already existed (a redelivered interaction): nothing new was queued. */
  readonly duplicate: boolean;
}

export type JobStatus =
  | { readonly state: 'queued'; readonly position: number }
  | { readonly state: 'running'; readonly step: number; readonly total: number }
  | { readonly state: 'done' }
  | {
      readonly state: 'failed';
      readonly reason: string;
      readonly errorId?: string;
      readonly userFacing: boolean;
    }
  | { readonly state: 'cancelled'; readonly by: string };

export interface JobTimings {
  readonly queuedAt: number;
  readonly startedAt?: number;
  readonly finishedAt?: number;
  /** Phase durations in ms, as the worker measured them. */
  readonly phases?: Readonly<
    Partial<Record<'queueWait' | 'textEncode' | 'denoise' | 'decode' | 'compose' | 'store', number>>
  >;
}

/** Adapter-private reference to where the chat side shows a job (message ids, tokens). */
export type MessageRef = Readonly<Record<string, string>>;

/**
 * Everything needed to render or act on a grid, kept in Redis with a TTL. Buttons carry only its id.
 * Three parts, each with one writer: `spec` (the submitter, once), `state` (the queue as the job
 * moves, and the chat side's message reference), `result` (the worker, once it finished). The zod
 * schema that checks it on write and on read is `gridRecordSchema` in queue/records.ts.
 */
export interface GridRecord {
  readonly id: string;
  /**
   * The validated job spec as submitted: the one source of prompts, seeds, settings and owner
   * (`spec.origin`). Only `origin.messageRef` is moved out, into `state.messageRef`, at submit.
   */
  readonly spec: JobSpec;
  readonly state: RecordState;
  /** What the worker made; absent until the job is done. */
  readonly result?: RecordResult;
}

export interface RecordState {
  readonly status: JobStatus;
  /**
   * Where the chat side shows the job, stored once. Who writes which part: the adapter's origin
   * reference (interaction token, response_url…) is written at submit; the service adds the ids of
   * the messages it posts through `Jobs.updateMessageRef` (merged key by key, later keys win). Read
   * it with `mergeMessageRef` (queue/records.ts), the one merge.
   */
  readonly messageRef: MessageRef;
  /** Runs started so far (BullMQ attempts). */
  readonly attempts: number;
  /** `host:pid` of the worker that ran (or runs) it. */
  readonly worker?: string;
  readonly timings: JobTimings;
  /**
   * When the record expires (ms since the epoch): RECORD_TTL after the job ended. A queued or
   * running job never expires; for one it is the earliest it could (a full TTL from now).
   */
  readonly expiresAt: number;
}

/** What a finished job adds to its record. */
export interface RecordResult {
  /** Storage keys of the grid PNG and the full-size PNGs. */
  readonly resultKeys: { readonly grid: string; readonly images: readonly string[] };
  /** Per image: CLIP tokens dropped by truncation. */
  readonly truncatedTokens: readonly number[];
  /** Per image, when the safety checker ran. */
  readonly nsfw?: readonly boolean[];
  /**
   * The model that made it: its served name (MODELS; `default` without it), whether it is the demo
   * model, the revision of its files (refine, reroll and re-renders need the same one), and the
   * loader's label (the folder name). Records from before models had names hold the label as `name`.
   */
  readonly model: {
    readonly name: string;
    readonly demo: boolean;
    readonly revision?: string;
    readonly label?: string;
  };
}

/**
 * Who cancels, for the record and the cancelled message. Whether they may is the caller's decision
 * (the conversation service's policy); the queue only cancels a job that is still cancellable.
 */
export interface CancelBy {
  readonly surface: Surface;
  readonly user: string;
}

/** A finished job handed to the chat side, durably: failed handlers are retried until they succeed. */
export type DeliveryEvent =
  | {
      readonly type: 'done';
      readonly record: GridRecord;
      /** Grid PNG (2×2 for 4 images). */
      readonly grid: Buffer;
      /** Loads full-size image `index` as PNG (with its A1111 `parameters` text chunk). */
      image(index: number): Promise<Buffer>;
    }
  | {
      readonly type: 'failed';
      readonly record: GridRecord;
      readonly reason: string;
      readonly errorId?: string;
      readonly userFacing: boolean;
    }
  | { readonly type: 'cancelled'; readonly record: GridRecord; readonly by: string };

/**
 * Handed to a delivery handler so a retried delivery never posts twice: each side effect runs
 * under a named step that is recorded in Redis once it succeeds. A step already done returns its
 * stored result instead of running again.
 */
export interface DeliveryContext {
  /** Attempt number, starting at 1. */
  readonly attempt: number;
  once(step: string, run: () => Promise<string>): Promise<string>;
}

/** Progress is lossy: events may be dropped or coalesced; only the latest matters. */
export interface ProgressEvent {
  readonly jobId: string;
  readonly surface: Surface;
  readonly step: number;
  readonly total: number;
  /** Latent preview of image 0 as a small PNG, when the worker made one. */
  readonly preview?: Buffer;
}

/** Thrown by a delivery handler to ask for a retry after a given delay (e.g. HTTP 429 retry-after). */
export class RetryLaterError extends Error {
  readonly retryAfterMs: number;
  constructor(message: string, retryAfterMs: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RetryLaterError';
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * Thrown by a delivery handler when retrying can never succeed (the channel is gone, the app lost
 * access or a scope): the delivery stops at once instead of retrying for an hour, and is logged.
 */
export class PermanentDeliveryError extends InternalError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(ErrorCode.ChatApi, message, options);
  }
}

export interface Subscription {
  close(): Promise<void>;
}

/** What travels with a job besides its spec. */
export interface SubmitOptions {
  /**
   * The uploaded init image the spec's `init: {from: 'upload', sha256, …}` names (its encoded bytes,
   * exactly as `describeInitImage` read them). Stored (once per SHA-256) before the job is queued; the
   * spec JSON holds only the reference. Absent for such a spec: the stored blob must still be there (a
   * reroll of an image prompt), else UserError E_EXPIRED.
   */
  readonly initImage?: Uint8Array;
}

export interface Jobs {
  /**
   * Validates and enqueues. Throws UserError when a limit is hit (per-user cap, queue full, an init
   * image too large or not matching its reference).
   */
  submit(spec: JobSpecInput, options?: SubmitOptions): Promise<SubmitResult>;
  status(id: string): Promise<JobStatus | null>;
  /**
   * Cancels the job if it is still queued or running, atomically; throws UserError (NotFound,
   * AlreadyFinished) when it is not. Does not check who asks: the caller decides that.
   */
  cancel(id: string, by: CancelBy): Promise<JobStatus>;
  /** Null when the record never existed or has expired. */
  record(id: string): Promise<GridRecord | null>;
  /**
   * Grid PNG or full-size image PNG of a finished grid; null when the record has expired or the job
   * did not finish. PNGs are kept shorter than records (IMAGE_TTL, a memory budget): a missing one
   * is made again from the record through the queue (one job however many ask) and awaited.
   */
  gridPng(id: string): Promise<Buffer | null>;
  imagePng(id: string, index: number): Promise<Buffer | null>;
  /**
   * Whether a running worker serves `model` now (workers announce theirs every few seconds). A job for
   * a model no worker serves still queues, and runs once one starts; the caller may say so.
   * Optional: an implementation without workers (a fake) need not answer.
   */
  modelServed?(model: string): Promise<boolean>;
  /** Remembers where the chat side showed the job (message ids), for progress edits and later deliveries. */
  updateMessageRef(id: string, patch: MessageRef): Promise<void>;
  /** Durable deliveries for one surface. The handler throwing means "retry later" (with backoff). */
  onDelivery(
    surface: Surface,
    handler: (event: DeliveryEvent, ctx: DeliveryContext) => Promise<void>,
  ): Subscription;
  /** Lossy progress for one surface. */
  onProgress(surface: Surface, handler: (event: ProgressEvent) => void): Subscription;
  close(): Promise<void>;
}
