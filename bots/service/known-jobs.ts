import { type GridRecord, mergeMessageRef } from '../../queue/index.ts';
import type { JobTarget } from '../surface.ts';
import { displayPrompt } from './format.ts';

/** What progress and results need to know about a job; cached per job, read from the record after a restart. */
export interface JobInfo {
  readonly target: JobTarget;
  readonly prompt: string;
}

/** Jobs remembered as finished, so late progress events never overwrite a result. */
const FINISHED_MEMORY = 10_000;

/** The jobs this process has shown: where their messages are, and which have finished. */
export class KnownJobs {
  readonly #info = new Map<string, JobInfo>();
  readonly #finished = new Set<string>();

  get(id: string): JobInfo | undefined {
    return this.#info.get(id);
  }

  set(id: string, info: JobInfo): void {
    this.#info.set(id, info);
  }

  forget(id: string): void {
    this.#info.delete(id);
  }

  markFinished(id: string): void {
    this.#finished.add(id);
    if (this.#finished.size > FINISHED_MEMORY) {
      const oldest = this.#finished.values().next().value;
      if (oldest !== undefined) this.#finished.delete(oldest);
    }
  }

  isFinished(id: string): boolean {
    return this.#finished.has(id);
  }

  /** Where the record's messages are: the stored messageRef, plus any patch this process has not seen stored yet. */
  targetOf(record: GridRecord): JobTarget {
    const cached = this.#info.get(record.id)?.target;
    const thread = record.spec.origin.thread;
    return {
      recordId: record.id,
      channel: record.spec.origin.channel,
      ...(thread === undefined ? {} : { thread }),
      messageRef: mergeMessageRef(record.state.messageRef, cached?.messageRef),
      requestedAt: record.spec.requestedAt,
      owner: record.spec.origin.user,
    };
  }

  /** The cached info, or the record's (a job submitted before a restart, or by another process). */
  infoOf(record: GridRecord): JobInfo {
    return (
      this.#info.get(record.id) ?? {
        target: this.targetOf(record),
        prompt: displayPrompt(record.spec.prompts),
      }
    );
  }
}
