import { alreadyEndedError, jobGoneError } from './job-errors.ts';
import type { JobsContext } from './jobs-context.ts';
import { loadRecord } from './queue-state.ts';
import { CANCEL, FINISH, runScript, stringReply } from './scripts.ts';
import type { CancelBy, JobStatus } from './types.ts';

/**
 * Cancelling a job (who may is the caller's decision): marks the record cancelled (CANCEL), tells the worker running
 * it, and ends and delivers a job that was still queued.
 */
export function createCancel(ctx: JobsContext): (id: string, by: CancelBy) => Promise<JobStatus> {
  const { client, keys, deliveries, logger, metrics } = ctx;

  async function cancelNow(id: string, by: CancelBy): Promise<JobStatus> {
    const record = await loadRecord(client, keys, id);
    if (record === null) {
      throw jobGoneError(id);
    }
    const cancelled: JobStatus = { state: 'cancelled', by: by.user };
    const [outcome, previous = ''] = stringReply(
      await runScript(client, CANCEL, [keys.record(id)], [JSON.stringify(cancelled), by.user, Date.now()]),
    );
    if (outcome === 'missing') {
      throw jobGoneError(id);
    }
    if (outcome === 'terminal') {
      throw alreadyEndedError(id, previous);
    }
    // Tell whichever worker runs it (any process); it aborts at the next step and delivers.
    await client.publish(keys.cancelChannel, id);
    if (previous === 'queued') {
      const generate = ctx.queueFor(record.spec.model);
      const removed = await generate.remove(id);
      // Not removed and not active: the job is gone from BullMQ (never enqueued), so nobody else will
      // deliver. Active: the worker has it and will see the cancel.
      const state = removed === 1 ? 'removed' : await generate.getJobState(id);
      if (state !== 'active') {
        await runScript(
          client,
          FINISH,
          [keys.record(id), keys.unfinished, keys.progress(id)],
          [id, 'cancelled', JSON.stringify(cancelled), '', '', Date.now()],
        );
        await deliveries.enqueue(id, record.spec.origin.surface);
      }
    }
    metrics.jobFinished('cancelled');
    logger.info({ jobId: id, by: by.user, was: previous }, 'job cancelled');
    return cancelled;
  }
  return cancelNow;
}
