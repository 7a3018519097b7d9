/**
 * What the queue layer measures. Kept as a tiny interface (no prom-client here) so the ops layer
 * can back it with Prometheus histograms and counters, and tests can record calls.
 */
export type QueuePhase = 'queueWait' | 'textEncode' | 'denoise' | 'decode' | 'compose' | 'store';
export type JobOutcome = 'done' | 'failed' | 'cancelled';
export type SubmitOutcome = 'accepted' | 'duplicate' | 'refused_user_cap' | 'refused_queue_full' | 'invalid';
export type DeliveryOutcome = 'delivered' | 'retry' | 'retry_later' | 'gave_up';

export interface QueueMetrics {
  /** Duration of one phase of one job, in ms. */
  observePhase(phase: QueuePhase, ms: number): void;
  /** One denoising step, in ms. */
  stepTime(ms: number): void;
  jobFinished(outcome: JobOutcome): void;
  /** A transient failure that will be retried. */
  retry(): void;
  submit(outcome: SubmitOutcome): void;
  delivery(outcome: DeliveryOutcome): void;
}

export const noopMetrics: QueueMetrics = {
  observePhase: () => {},
  stepTime: () => {},
  jobFinished: () => {},
  retry: () => {},
  submit: () => {},
  delivery: () => {},
};
