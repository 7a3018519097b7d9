import type { ServerResponse } from 'node:http';
import type { PublicError } from '../../core/errors.ts';
import type {
  CancelledView,
  ChatSurface,
  FailureView,
  GridView,
  ImageView,
  InteractionReply,
  JobTarget,
  Markup,
  MessageRef,
  ProgressView,
  QueuedView,
  SurfaceLimits,
} from '../surface.ts';

/**
 * The playground as a chat surface. It has no chat API to call: "posting" means telling the
 * browsers that watch the job, over server-sent events. Results live in Redis anyway (the page reads
 * them through the JSON API), so a browser that was closed sees everything when it comes back.
 */

/** What the page receives on the event stream. `job` events carry only the id; the page fetches the job. */
export type WebEvent =
  | { readonly type: 'job'; readonly id: string; readonly status: string }
  | {
      readonly type: 'progress';
      readonly id: string;
      readonly step: number;
      readonly total: number;
      readonly percent: number;
      readonly preview: string | null;
    };

/** Texts use a tiny markdown subset (`**bold**`, `` `code` ``) that the page renders as DOM nodes, never HTML. */
export const WEB_MARKUP: Markup = {
  bold: (text) => `**${text}**`,
  code: (text) => `\`${text.replace(/`/gu, "'")}\``,
  mention: (user) => (user.startsWith('u-') || user.startsWith('ip-') ? 'you' : `@${user}`),
  escape: (text) => text.replace(/([\\`*])/gu, '\\$1'),
};

/** Browsers take any size; results are served as the stored PNG, with its parameters chunk. */
export const WEB_LIMITS: SurfaceLimits = {
  maxUploadBytes: 256 * 1024 * 1024,
  maxTextLength: 8000,
  progressPreviews: true,
};

interface Client {
  readonly res: ServerResponse;
  readonly user: string;
  readonly jobs: ReadonlySet<string>;
}

export interface WebSurfaceOptions {
  /** Previews kept in memory for `GET /api/jobs/:id/preview.png`. @defaultValue 64 */
  readonly maxPreviews?: number;
  /** Comment line sent to keep proxies from closing idle streams. @defaultValue 15000 */
  readonly heartbeatMs?: number;
  /**
   * Open event streams one identity may hold (a browser tab holds one); the server answers 429 past it.
   * @defaultValue MAX_STREAMS_PER_USER (4)
   */
  readonly maxStreamsPerUser?: number;
}

/** Open `/api/events` streams per identity: a few tabs, not hundreds of sockets from one client. */
export const MAX_STREAMS_PER_USER = 4;

export class WebSurface implements ChatSurface {
  readonly surface = 'web' as const;
  readonly markup = WEB_MARKUP;
  readonly limits = WEB_LIMITS;
  readonly #clients = new Set<Client>();
  /** Latest preview PNG per job, oldest first (Map keeps insertion order). */
  readonly #previews = new Map<string, { step: number; png: Buffer }>();
  /** Latest progress per running job, so a page that connects mid-job sees it at once. */
  readonly #progress = new Map<string, WebEvent & { type: 'progress' }>();
  readonly #maxPreviews: number;
  readonly maxStreamsPerUser: number;
  readonly #heartbeat: NodeJS.Timeout;
  #closed = false;

  constructor(options: WebSurfaceOptions = {}) {
    this.#maxPreviews = options.maxPreviews ?? 64;
    this.maxStreamsPerUser = options.maxStreamsPerUser ?? MAX_STREAMS_PER_USER;
    this.#heartbeat = setInterval(() => {
      for (const client of this.#clients) client.res.write(': keep-alive\n\n');
    }, options.heartbeatMs ?? 15_000);
    this.#heartbeat.unref();
  }

  // ——— ChatSurface ———

  async showProgress(target: JobTarget, view: ProgressView): Promise<void> {
    let preview: string | null = null;
    if (view.preview !== undefined) {
      this.#previews.delete(target.recordId);
      this.#previews.set(target.recordId, { step: view.step, png: view.preview.data });
      while (this.#previews.size > this.#maxPreviews) {
        const oldest = this.#previews.keys().next().value;
        if (oldest === undefined) break;
        this.#previews.delete(oldest);
      }
      // The step in the query makes each preview a new URL, so the browser never shows a cached one.
      preview = `/api/jobs/${encodeURIComponent(target.recordId)}/preview.png?step=${view.step}`;
    }
    const event: WebEvent & { type: 'progress' } = {
      type: 'progress',
      id: target.recordId,
      step: view.step,
      total: view.total,
      percent: view.percent,
      preview,
    };
    this.#progress.delete(target.recordId);
    this.#progress.set(target.recordId, event);
    while (this.#progress.size > 1000) {
      const oldest = this.#progress.keys().next().value;
      if (oldest === undefined) break;
      this.#progress.delete(oldest);
    }
    this.#broadcast(target.owner, event);
  }

  async showGrid(target: JobTarget, _view: GridView): Promise<string> {
    return this.#finished(target, 'done');
  }

  async showFailure(target: JobTarget, _view: FailureView): Promise<string> {
    return this.#finished(target, 'failed');
  }

  async showCancelled(target: JobTarget, _view: CancelledView): Promise<string> {
    return this.#finished(target, 'cancelled');
  }

  #finished(target: JobTarget, status: string): string {
    this.#progress.delete(target.recordId);
    this.#broadcast(target.owner, { type: 'job', id: target.recordId, status });
    return `web:${target.recordId}:${status}`;
  }

  // ——— what the HTTP side uses ———

  /** Tells the owner's pages that a job was queued (the POST that made it already answered its own page). */
  announceQueued(owner: string, id: string): void {
    this.#broadcast(owner, { type: 'job', id, status: 'queued' });
  }

  preview(id: string): Buffer | undefined {
    return this.#previews.get(id)?.png;
  }

  latestProgress(id: string): { step: number; total: number } | undefined {
    const p = this.#progress.get(id);
    return p === undefined ? undefined : { step: p.step, total: p.total };
  }

  get clientCount(): number {
    return this.#clients.size;
  }

  /** Streams `user` holds open now. */
  openStreams(user: string): number {
    let count = 0;
    for (const client of this.#clients) if (client.user === user) count++;
    return count;
  }

  /**
   * Streams events for jobs owned by `user`, plus the listed job ids, to `res` until the client goes
   * away or the surface closes.
   */
  stream(res: ServerResponse, user: string, jobs: ReadonlySet<string>): void {
    if (this.#closed) {
      res.writeHead(503, { 'content-type': 'text/plain' }).end('shutting down');
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      // Tells nginx-style proxies not to buffer the stream.
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    const client: Client = { res, user, jobs };
    this.#clients.add(client);
    res.on('close', () => this.#clients.delete(client));
    for (const event of this.#progress.values()) {
      if (jobs.has(event.id)) write(res, event);
    }
  }

  /** Ends every stream; browsers reconnect to whichever process serves next. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    for (const client of this.#clients) client.res.end();
    this.#clients.clear();
  }

  #broadcast(owner: string, event: WebEvent): void {
    for (const client of this.#clients) {
      if (client.user === owner || client.jobs.has(event.id)) write(client.res, event);
    }
  }
}

function write(res: ServerResponse, event: WebEvent): void {
  res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
}

/** What the service told one HTTP request, captured so the route can answer with one status. */
export type ReplyOutcome =
  | { readonly kind: 'queued'; readonly view: QueuedView }
  | { readonly kind: 'private'; readonly text: string; readonly error?: PublicError }
  | { readonly kind: 'image'; readonly view: ImageView };

/**
 * The InteractionReply of one HTTP request: it acknowledges nothing by itself (the HTTP response is
 * the acknowledgement) and records the first visible answer for the route to turn into a status.
 */
export class HttpReply implements InteractionReply {
  outcome: ReplyOutcome | undefined;

  async accept(): Promise<void> {}

  /** `error`, when the service passes it, gives the status code (429, 404, …); otherwise 400. */
  async privately(text: string, error?: PublicError): Promise<void> {
    this.outcome ??= error === undefined ? { kind: 'private', text } : { kind: 'private', text, error };
  }

  async queued(view: QueuedView): Promise<MessageRef | undefined> {
    this.outcome ??= { kind: 'queued', view };
    return undefined;
  }

  async image(view: ImageView): Promise<void> {
    this.outcome ??= { kind: 'image', view };
  }
}
