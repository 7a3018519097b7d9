import { randomUUID } from 'node:crypto';
import { ErrorCode, InternalError } from '../core/errors.ts';
import { type JobSpecInput, jobIdFor, parseJobSpec } from '../core/jobspec.ts';
import { DEFAULT_MODEL_NAME, modelRevisionError } from '../core/models.ts';
import { isUnavailableError, REQUEST_TIMEOUT_MS } from './connection.ts';
import { fairAddOptions } from './fairness.ts';
import { keepInitImage } from './init-images.ts';
import { invalidSpecError, queueFullError, userCapError } from './job-errors.ts';
import type { JobsContext } from './jobs-context.ts';
import { loadRecord, queuePosition, retryAfterSeconds } from './queue-state.ts';
import { newRecord } from './records.ts';
import { RESERVE, runScript, stringReply, UNRESERVE } from './scripts.ts';
import { servedRevisions } from './served.ts';
import type { SubmitOptions, SubmitResult } from './types.ts';

/** An init image outlives the record's TTL by this much, for the time its job waits and runs. */
const INIT_IMAGE_GRACE_MS = 24 * 60 * 60 * 1000;

export interface SubmitLimits {
  readonly perUser: number;
  readonly queueDepth: number;
  readonly recordTtlMs: number;
  readonly orphanGraceMs: number;
  /** Teams take turns (queue/fairness.ts); off: plain FIFO. @defaultValue true */
  readonly fairSharing?: boolean;
}

/**
 * Submitting a job: validate the spec, reserve its slot and write its record atomically (RESERVE),
 * then enqueue it; a redelivered interaction answers from its record. A submit whose caller was
 * told it failed has its reservation undone, retried on reconnect until Redis confirms it.
 */
export function createSubmit(
  ctx: JobsContext,
  limits: SubmitLimits,
): (input: JobSpecInput, options?: SubmitOptions) => Promise<SubmitResult> {
  const { client, keys, logger, metrics } = ctx;
  const { perUser, queueDepth, recordTtlMs, orphanGraceMs } = limits;
  const fair = { enabled: limits.fairSharing ?? true, orphanGraceMs };
  // Submit calls whose caller was told they failed, by id → attempt token: their reservation is
  // undone (it may still have run: a hung Redis runs it when it wakes up). Retried until it is done.
  const undo = new Map<string, string>();
  let undoTimer: NodeJS.Timeout | undefined;
  client.on('ready', () => flushUndo());

  /** Undoes a failed submit's reservation now, and again on reconnect until Redis confirms it. */
  function abandon(id: string, attempt: string): void {
    undo.set(id, attempt);
    flushUndo();
  }

  function flushUndo(): void {
    if (undoTimer !== undefined) clearTimeout(undoTimer);
    undoTimer = undefined;
    if (ctx.isClosed() || undo.size === 0) return;
    // Sent at once, on the same connection as the failed call, so Redis runs it right after that
    // call; EVAL, not EVALSHA, so a NOSCRIPT round trip can't let other commands go first.
    const pending = [...undo].map(([id, attempt]) =>
      client.eval(UNRESERVE.source, 2, keys.record(id), keys.unfinished, id, attempt).then(
        (removed) => {
          if (undo.get(id) === attempt) undo.delete(id);
          if (Number(removed) === 1) logger.info({ jobId: id }, 'undid the reservation of a failed submit');
        },
        () => {},
      ),
    );
    void Promise.all(pending).then(() => {
      if (!ctx.isClosed() && undo.size > 0 && undoTimer === undefined) {
        undoTimer = setTimeout(flushUndo, REQUEST_TIMEOUT_MS);
        undoTimer.unref();
      }
    });
  }

  async function submitNow(input: JobSpecInput, options: SubmitOptions = {}): Promise<SubmitResult> {
    const parsed = parseJobSpec(input);
    if (!parsed.ok) {
      metrics.submit('invalid');
      throw invalidSpecError(parsed.message);
    }
    const spec = parsed.spec;
    const origin = spec.origin;
    const id = jobIdFor(origin.surface, origin.interactionId);
    const generate = ctx.queueFor(spec.model);
    // Jobs wait in their model's queue even when no worker serves it now (a worker restarting, a GPU
    // host coming up); the caller may say so (Jobs.modelServed). Which names exist at all is the
    // caller's list (MODELS). A refine of a grid whose model's files changed is refused here when the
    // live workers say so, and by the worker otherwise.
    const revisions = await servedRevisions(client, keys, spec.model ?? DEFAULT_MODEL_NAME);
    if (
      spec.modelRevision !== undefined &&
      revisions.length > 0 &&
      revisions.every((r) => r !== '' && r !== spec.modelRevision)
    ) {
      // Every live worker has other files for this name: the same seeds would give other pictures.
      metrics.submit('invalid');
      throw modelRevisionError(spec.model ?? DEFAULT_MODEL_NAME, spec.modelRevision, revisions[0]!);
    }
    // An uploaded init image is stored (or renewed) before the job can be queued; its limits are checked here.
    await keepInitImage(client, keys, spec, options.initImage, recordTtlMs + INIT_IMAGE_GRACE_MS);
    const now = Date.now();
    const initial = newRecord(id, spec, now, recordTtlMs);
    const attempt = randomUUID();
    let reserveReply: unknown;
    try {
      reserveReply = await runScript(
        client,
        RESERVE,
        [keys.record(id), keys.userJobs(origin.surface, origin.user), keys.unfinished],
        [
          id,
          JSON.stringify(initial.spec),
          JSON.stringify(initial.state.status),
          JSON.stringify(initial.state.messageRef),
          recordTtlMs,
          perUser,
          queueDepth,
          now,
          orphanGraceMs,
          keys.recordPrefix,
          keys.generateJobPrefix,
          attempt,
          keys.jobPrefixOf(spec.model),
        ],
      );
    } catch (error) {
      // No answer is not "not run": a hung Redis runs the reservation when it wakes up.
      if (isUnavailableError(error)) abandon(id, attempt);
      throw error;
    }
    const reply = stringReply(reserveReply);
    const [outcome, detail = ''] = reply;
    switch (outcome) {
      case 'duplicate':
        return duplicate(id, detail);
      case 'user': {
        metrics.submit('refused_user_cap');
        const retryAfter = await retryAfterSeconds(client, keys);
        throw userCapError(Number(detail), perUser, retryAfter, { id, user: origin.user });
      }
      case 'full': {
        metrics.submit('refused_queue_full');
        const retryAfter = await retryAfterSeconds(client, keys);
        throw queueFullError(Number(detail), queueDepth, retryAfter, { id });
      }
      case 'ok':
        break;
      default:
        throw new InternalError(ErrorCode.Redis, `unexpected reserve reply ${JSON.stringify(reply)}`);
    }
    try {
      const turn = await fairAddOptions(ctx, { id, model: spec.model, origin }, fair);
      await generate.add('generate', spec, { jobId: id, ...turn });
    } catch (error) {
      // The caller is told it failed, so the reservation goes (the user can retry at once). Should
      // the add still run later, its job finds no record and the worker drops it unrun.
      abandon(id, attempt);
      if (isUnavailableError(error)) throw error;
      throw new InternalError(ErrorCode.Redis, 'could not enqueue the job', {
        cause: error,
        context: { id },
      });
    }
    metrics.submit('accepted');
    // Queued now: from here on the answer is a success, even if the position can't be read.
    const position = await queuePosition(client, keys, id, spec.model).catch(() => Number(detail) || 0);
    return { jobId: id, seeds: spec.seeds, position, duplicate: false };
  }

  /** A redelivered interaction: answer from the record; re-enqueue a queued job whose enqueue was lost. */
  async function duplicate(id: string, state: string): Promise<SubmitResult> {
    metrics.submit('duplicate');
    const record = await loadRecord(client, keys, id);
    if (record === null) {
      // Expired between the two reads: extremely unlikely; report it as an internal hiccup.
      throw new InternalError(ErrorCode.Redis, `record ${id} vanished while submitting`);
    }
    const generate = ctx.queueFor(record.spec.model);
    if (state === 'queued' && (await generate.getJob(id)) === undefined) {
      logger.warn({ jobId: id }, 're-enqueueing a queued job whose BullMQ job was missing');
      const turn = await fairAddOptions(
        ctx,
        { id, model: record.spec.model, origin: record.spec.origin },
        fair,
      );
      await generate.add('generate', record.spec, { jobId: id, ...turn });
    }
    const position = state === 'queued' ? await queuePosition(client, keys, id, record.spec.model) : 0;
    return { jobId: id, seeds: record.spec.seeds, position, duplicate: true };
  }

  return submitNow;
}
