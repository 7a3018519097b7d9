import type { Origin } from '../../core/jobspec.ts';
import type { Jobs, QueueMetrics } from '../../queue/index.ts';
import type { TeamSupport } from '../settings/support.ts';
import type { AckGate } from './ack-gate.ts';
import type { Chains } from './chains.ts';
import type { HistoryIndex } from './history-types.ts';
import type { KnownJobs } from './known-jobs.ts';
import type { ServiceLog, ServiceSettings } from './settings.ts';

/** What the flow modules (imagine, press, deliver) share: the service's parts, wired once by the service. */
export interface ServiceContext {
  readonly jobs: Jobs;
  readonly settings: ServiceSettings;
  readonly log: ServiceLog;
  /** Counts requests refused as invalid on every surface. */
  readonly metrics: Pick<QueueMetrics, 'submit'> | undefined;
  /** Uniform [0, 1) source for base seeds. */
  readonly random: () => number;
  readonly now: () => number;
  readonly gate: AckGate;
  readonly chains: Chains;
  readonly known: KnownJobs;
  /** Team settings and quotas; absent, only the environment's settings apply. */
  readonly teams: TeamSupport | undefined;
  /** Each user's recent grids per channel (`/imagine history`); absent, history is empty. */
  readonly history?: HistoryIndex | undefined;
}

/**
 * The chain key of an interaction's submission. Deliveries and progress for the job it makes wait
 * on it (see submit.ts), found through the record's origin: the service never derives the job id
 * itself, the queue does (`Jobs.submit`).
 */
export function interactionKey(origin: Pick<Origin, 'surface' | 'interactionId'>): string {
  return `interaction:${origin.surface}:${origin.interactionId}`;
}

/** Runs an adapter call whose failure only needs logging (a reply the user may not see). */
export async function safely(log: ServiceLog, run: () => Promise<unknown>, what: string): Promise<void> {
  try {
    await run();
  } catch (error) {
    log.warn({ err: error }, `${what} failed`);
  }
}
