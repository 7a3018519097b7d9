import { PLAIN_MARKUP } from '../../bots/service/format.ts';
import type {
  CancelledView,
  ChatSurface,
  FailureView,
  GridView,
  ImageView,
  InteractionReply,
  JobTarget,
  MessageRef,
  ProgressView,
  QueuedView,
  SurfaceLimits,
} from '../../bots/surface.ts';
import type { Surface } from '../../core/jobspec.ts';

export type Call =
  | { method: 'accept' }
  | { method: 'privately'; text: string }
  | { method: 'queued'; view: QueuedView }
  | { method: 'image'; view: ImageView };

/** A reply that records what the service asked for, in order. */
export class RecordingReply implements InteractionReply {
  readonly calls: Call[] = [];
  /** Events from outside (e.g. submits) interleaved with calls, for ordering checks. */
  readonly log: string[];
  failAccept = false;
  patch: MessageRef | undefined = { messageId: 'm-1' };

  constructor(log: string[] = []) {
    this.log = log;
  }

  async accept(): Promise<void> {
    this.log.push('accept');
    this.calls.push({ method: 'accept' });
    if (this.failAccept) throw new Error('already acknowledged');
  }
  async privately(text: string): Promise<void> {
    this.log.push('privately');
    this.calls.push({ method: 'privately', text });
  }
  async queued(view: QueuedView): Promise<MessageRef | undefined> {
    this.log.push('queued');
    this.calls.push({ method: 'queued', view });
    return this.patch;
  }
  async image(view: ImageView): Promise<void> {
    this.log.push('image');
    this.calls.push({ method: 'image', view });
  }

  only<M extends Call['method']>(method: M): Extract<Call, { method: M }>[] {
    return this.calls.filter((c): c is Extract<Call, { method: M }> => c.method === method);
  }
}

export type SurfaceCall =
  | { method: 'progress'; target: JobTarget; view: ProgressView }
  | { method: 'grid'; target: JobTarget; view: GridView }
  | { method: 'failed'; target: JobTarget; view: FailureView }
  | { method: 'cancelled'; target: JobTarget; view: CancelledView };

/** A surface that records renders; `failNext` makes the next result render throw (a chat API outage). */
export class RecordingSurface implements ChatSurface {
  readonly surface: Surface;
  readonly markup = PLAIN_MARKUP;
  readonly limits: SurfaceLimits;
  readonly calls: SurfaceCall[] = [];
  failNext = 0;
  #posted = 0;

  constructor(limits: Partial<SurfaceLimits> = {}, surface: Surface = 'discord') {
    this.surface = surface;
    this.limits = {
      maxUploadBytes: 10 * 1024 * 1024,
      maxTextLength: 2000,
      progressPreviews: true,
      ...limits,
    };
  }

  async showProgress(target: JobTarget, view: ProgressView): Promise<void> {
    this.calls.push({ method: 'progress', target, view });
  }
  async showGrid(target: JobTarget, view: GridView): Promise<string> {
    this.#maybeFail();
    this.calls.push({ method: 'grid', target, view });
    return `posted-${++this.#posted}`;
  }
  async showFailure(target: JobTarget, view: FailureView): Promise<string> {
    this.#maybeFail();
    this.calls.push({ method: 'failed', target, view });
    return `posted-${++this.#posted}`;
  }
  async showCancelled(target: JobTarget, view: CancelledView): Promise<string> {
    this.#maybeFail();
    this.calls.push({ method: 'cancelled', target, view });
    return `posted-${++this.#posted}`;
  }

  only<M extends SurfaceCall['method']>(method: M): Extract<SurfaceCall, { method: M }>[] {
    return this.calls.filter((c): c is Extract<SurfaceCall, { method: M }> => c.method === method);
  }

  #maybeFail(): void {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('chat API unavailable');
    }
  }
}
