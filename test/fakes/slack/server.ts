import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parse as parseQuery } from 'node:querystring';
import { type WebSocket, WebSocketServer } from 'ws';
import { Waiters } from '../waiters.ts';

/**
 * A local fake of the Slack Web API, speaking the wire format @slack/web-api uses (form-encoded
 * POSTs to `<base>/api/<method>`, nested values JSON-encoded, bearer token header) plus the
 * files.uploadV2 upload URL and `response_url` endpoints. It keeps a small message store so tests
 * can assert what a user would see, records every call, and can inject faults per method.
 */

export const FAKE_BOT_TOKEN = 'xoxb-fake-bot-token';
export const FAKE_TEAM_ID = 'T0FAKE';
export const FAKE_BOT_USER_ID = 'U0BOT';
export const FAKE_BOT_ID = 'B0BOT';
export const FAKE_APP_TOKEN = 'xapp-1-fake-app-token';

export interface FakeSlackOptions {
  /** The only bot token accepted; calls with another get `invalid_auth`. Default {@link FAKE_BOT_TOKEN}. */
  readonly botToken?: string;
  /** The app-level token `apps.connections.open` accepts (Socket Mode). Default {@link FAKE_APP_TOKEN}. */
  readonly appToken?: string;
}

/** What the app answered to a Socket Mode envelope. */
export interface SocketAck {
  readonly envelopeId: string;
  readonly payload: Readonly<Record<string, unknown>>;
  /** From sending the envelope to receiving its ack. */
  readonly ackMs: number;
}

export interface FakeCall {
  /** Web API method (`chat.postMessage`), or `upload` / `response_url` for those endpoints. */
  readonly method: string;
  readonly params: Readonly<Record<string, unknown>>;
  /** HTTP status the fake answered with. */
  readonly status: number;
  /** `ok` of the answer (false for platform errors and injected faults). */
  readonly ok: boolean;
  readonly at: number;
}

export interface FakeFile {
  readonly id: string;
  readonly filename: string;
  readonly length: number;
  readonly altText?: string;
  /** The uploaded bytes, once POSTed to the upload URL. */
  bytes?: Buffer;
  title?: string;
  /** Set by files.completeUploadExternal. */
  shared?: { readonly channel?: string; readonly threadTs?: string; readonly initialComment?: string };
}

/** A file a user shared in a channel (what files.list lists and `url_private_download` serves). */
export interface FakeUserFile {
  readonly id: string;
  readonly user: string;
  readonly channel: string;
  readonly threadTs?: string;
  readonly name: string;
  readonly mimetype: string;
  readonly data: Buffer;
  /** Seconds since the epoch, as Slack's `created`. */
  readonly created: number;
  /** What `size` Slack reports (default: the real size). */
  readonly size: number;
  /** Served chunked, without Content-Length. */
  readonly noLength?: boolean;
  /** Answer the download with a 302 to this URL. */
  readonly redirectTo?: string;
  /** List this URL as `url_private_download` instead of the fake's own (a file elsewhere). */
  readonly listedUrl?: string;
}

export interface FakeMessage {
  readonly channel: string;
  readonly ts: string;
  text: string;
  blocks: readonly SlackBlock[];
  readonly threadTs?: string;
  /** Files shared with this message (files.completeUploadExternal). */
  readonly files: readonly FakeFile[];
  /** Number of chat.update calls (and response_url replacements) applied. */
  edits: number;
  deleted: boolean;
  /** Every text the message has shown, in order (progress history). */
  readonly history: string[];
  /** When it was posted (Date.now(), comparable with record timings across processes). */
  readonly postedAt: number;
}

export interface FakeEphemeral {
  readonly channel: string;
  readonly user?: string;
  readonly text: string;
  readonly blocks: readonly SlackBlock[];
  readonly via: 'chat.postEphemeral' | 'response_url';
}

/** Loose Block Kit shape: enough to find buttons. */
export interface SlackBlock {
  readonly type: string;
  readonly block_id?: string;
  readonly elements?: readonly SlackBlockElement[];
  readonly text?: { readonly type: string; readonly text: string };
  readonly [key: string]: unknown;
}
export interface SlackBlockElement {
  readonly type: string;
  readonly action_id?: string;
  readonly value?: string;
  readonly text?: { readonly type: string; readonly text: string };
  readonly [key: string]: unknown;
}

export type Fault =
  /** HTTP 429 with a Retry-After header (seconds). */
  | { readonly status: 429; readonly retryAfter: number }
  /** A server error with an empty body. */
  | { readonly status: 500 | 502 | 503 }
  /** HTTP 200 with `{ok: false, error}` (Slack's platform errors). */
  | { readonly error: string };

export interface ChannelInfo {
  readonly id: string;
  readonly name?: string;
  /** DMs (`D…`) and group DMs. */
  readonly isIm?: boolean;
  /** False: posting answers `not_in_channel`. Default true. */
  readonly botIsMember?: boolean;
}

interface ResponseUrlTarget {
  readonly channel: string;
  readonly user?: string;
  /** The message a block_actions response_url belongs to (replace_original / delete_original act on it). */
  readonly messageTs?: string;
  uses: number;
}

/** Slack allows 5 uses of a response_url within 30 minutes. */
const RESPONSE_URL_MAX_USES = 5;

/** A call the fake applied but has not answered yet (see `FakeSlack.holdNext`). */
export interface HeldResponse {
  /** Resolves once the call has been applied (its message exists) and its answer is held. */
  readonly arrived: Promise<Readonly<Record<string, unknown>>>;
  /** Sends the held answer (to a socket that may be dead by then). */
  release(): void;
}

export class FakeSlack {
  readonly botToken: string;
  readonly appToken: string;
  /** Every call received, in arrival order. */
  readonly calls: FakeCall[] = [];
  readonly messages: FakeMessage[] = [];
  readonly ephemerals: FakeEphemeral[] = [];
  readonly files = new Map<string, FakeFile>();
  /** Files users shared (see `shareUserFile`), newest last. */
  readonly userFiles: FakeUserFile[] = [];
  /** Every GET of a user file's private URL, with its headers (to check where the token went). */
  readonly fileDownloads: { path: string; authorization?: string }[] = [];
  /** Modals opened with views.open, oldest first (each with the id the fake gave it). */
  readonly views: (Record<string, unknown> & { id: string })[] = [];
  /** Workspace members users.info knows, with their roles. */
  readonly users = new Map<string, { readonly isAdmin?: boolean; readonly isOwner?: boolean }>();
  private readonly usedTriggers = new Set<string>();
  private readonly channels = new Map<string, ChannelInfo>();
  private readonly faults = new Map<string, Fault[]>();
  private readonly responseTargets = new Map<string, ResponseUrlTarget>();
  private readonly holds = new Map<
    string,
    {
      match: (params: Record<string, unknown>) => boolean;
      arrived: (params: Record<string, unknown>) => void;
      released: Promise<void>;
    }[]
  >();
  readonly #waiting = new Waiters('FakeSlack');
  private server: Server | undefined;
  private readonly wss = new WebSocketServer({ noServer: true });
  private readonly sockets = new Set<WebSocket>();
  private readonly pendingAcks = new Map<string, { sentAt: number; resolve: (ack: SocketAck) => void }>();
  private baseUrl = '';
  private tsCounter = 0;
  private idCounter = 0;

  constructor(options: FakeSlackOptions = {}) {
    this.botToken = options.botToken ?? FAKE_BOT_TOKEN;
    this.appToken = options.appToken ?? FAKE_APP_TOKEN;
  }

  /** Starts listening on a free loopback port. */
  async start(): Promise<this> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(500);
        res.end(String(error));
      });
    });
    server.keepAliveTimeout = 1000;
    server.on('upgrade', (req, socket, head) => {
      if (new URL(req.url ?? '/', 'http://x').pathname !== '/socket') {
        socket.destroy();
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => this.onSocket(ws));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    this.server = server;
    this.baseUrl = `http://127.0.0.1:${port}`;
    return this;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    for (const ws of this.sockets) ws.terminate();
    this.wss.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Web API base to give the client as `slackApiUrl` / `SLACK_API_URL` (ends with `/`). */
  get apiUrl(): string {
    return `${this.baseUrl}/api/`;
  }

  get url(): string {
    return this.baseUrl;
  }

  addChannel(info: ChannelInfo): void {
    this.channels.set(info.id, info);
  }

  /**
   * Queues faults for a method (`chat.postMessage`, `files.completeUploadExternal`, `upload`,
   * `response_url`…): each of its next calls consumes one fault instead of succeeding.
   */
  fail(method: string, ...faults: Fault[]): void {
    const list = this.faults.get(method) ?? [];
    list.push(...faults);
    this.faults.set(method, list);
  }

  /**
   * The next call to `method` (matching `match`, when given) is applied as usual, but its answer is
   * held until `release()`: a deterministic point "Slack has it, the app doesn't know yet" to kill
   * an app at.
   */
  holdNext(
    method: string,
    match: (params: Readonly<Record<string, unknown>>) => boolean = () => true,
  ): HeldResponse {
    let arrived: (params: Record<string, unknown>) => void = () => {};
    let release: () => void = () => {};
    const arrivedPromise = new Promise<Readonly<Record<string, unknown>>>((resolve) => {
      arrived = resolve;
    });
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const list = this.holds.get(method) ?? [];
    list.push({ match, arrived, released });
    this.holds.set(method, list);
    return { arrived: arrivedPromise, release };
  }

  /** A fresh response_url as Slack puts in a slash command or block_actions payload. */
  responseUrl(target: { channel: string; user?: string; messageTs?: string }): string {
    const id = `R${++this.idCounter}`;
    this.responseTargets.set(id, { ...target, uses: 0 });
    return `${this.baseUrl}/response/${id}`;
  }

  callsTo(method: string): FakeCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  /** Successful calls to a method. */
  okCallsTo(method: string): FakeCall[] {
    return this.calls.filter((c) => c.method === method && c.ok);
  }

  message(channel: string, ts: string): FakeMessage | undefined {
    return this.messages.find((m) => m.channel === channel && m.ts === ts);
  }

  /** Messages carrying a file (the grid and full-size posts), oldest first. */
  fileMessages(channel?: string): FakeMessage[] {
    return this.messages.filter(
      (m) => m.files.length > 0 && (channel === undefined || m.channel === channel),
    );
  }

  /** Messages whose blocks hold a button with the given action_id prefix, oldest first. */
  messagesWithButtons(actionIdPrefix = '', channel?: string): FakeMessage[] {
    return this.messages.filter(
      (m) =>
        !m.deleted &&
        (channel === undefined || m.channel === channel) &&
        buttonsOf(m).some((b) => b.action_id?.startsWith(actionIdPrefix)),
    );
  }

  /** Resolves when `predicate` holds (checked after every recorded request), or rejects after `timeoutMs`. */
  waitFor<T>(predicate: () => T | undefined | false, timeoutMs = 20_000, what = 'condition'): Promise<T> {
    return this.#waiting.waitFor(predicate, timeoutMs, what);
  }

  /** Socket Mode connections currently open (after `hello`). */
  get socketCount(): number {
    return this.sockets.size;
  }

  /**
   * Sends one Socket Mode envelope (`slash_commands`, `interactive`…) to the connected app and
   * resolves with its ack. Rejects if no app is connected or no ack comes within `timeoutMs`.
   */
  sendEnvelope(
    type: string,
    payload: Readonly<Record<string, unknown>>,
    timeoutMs = 10_000,
  ): Promise<SocketAck> {
    const ws = [...this.sockets][0];
    if (ws === undefined) return Promise.reject(new Error('FakeSlack: no Socket Mode connection'));
    const envelopeId = `env-${++this.idCounter}`;
    return new Promise<SocketAck>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pendingAcks.delete(envelopeId);
        reject(new Error(`FakeSlack: no ack for envelope ${envelopeId} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pendingAcks.set(envelopeId, {
        sentAt: performance.now(),
        resolve: (ack) => {
          clearTimeout(timer);
          resolve(ack);
        },
      });
      ws.send(JSON.stringify({ envelope_id: envelopeId, type, payload, accepts_response_payload: true }));
    });
  }

  // ---------------------------------------------------------------------------------------------

  private onSocket(ws: WebSocket): void {
    this.sockets.add(ws);
    ws.on('close', () => {
      this.sockets.delete(ws);
      this.#waiting.notify();
    });
    ws.on('message', (data: Buffer) => {
      let message: { envelope_id?: unknown; payload?: unknown };
      try {
        message = JSON.parse(data.toString('utf8')) as typeof message;
      } catch {
        return;
      }
      if (typeof message.envelope_id !== 'string') return;
      const pending = this.pendingAcks.get(message.envelope_id);
      if (pending === undefined) return;
      this.pendingAcks.delete(message.envelope_id);
      const payload =
        typeof message.payload === 'object' && message.payload !== null
          ? (message.payload as Record<string, unknown>)
          : {};
      pending.resolve({
        envelopeId: message.envelope_id,
        payload,
        ackMs: performance.now() - pending.sentAt,
      });
    });
    ws.send(
      JSON.stringify({ type: 'hello', num_connections: this.sockets.size, debug_info: { host: 'fake' } }),
    );
    this.#waiting.notify();
  }

  private nextTs(): string {
    this.tsCounter += 1;
    return `${Math.floor(Date.now() / 1000)}.${String(this.tsCounter).padStart(6, '0')}`;
  }

  private record(method: string, params: Record<string, unknown>, status: number, ok: boolean): void {
    this.calls.push({ method, params, status, ok, at: Date.now() });
    this.#waiting.notify();
  }

  /** Answers an injected fault, if one is queued for `method`. */
  private injectFault(method: string, params: Record<string, unknown>, res: ServerResponse): boolean {
    const fault = this.faults.get(method)?.shift();
    if (fault === undefined) return false;
    if ('error' in fault) {
      this.record(method, params, 200, false);
      json(res, 200, { ok: false, error: fault.error });
    } else if (fault.status === 429) {
      this.record(method, params, 429, false);
      res.writeHead(429, { 'retry-after': String(fault.retryAfter), 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: false, error: 'ratelimited' }));
    } else {
      this.record(method, params, fault.status, false);
      res.writeHead(fault.status);
      res.end();
    }
    return true;
  }

  /**
   * A user shares a file in a channel (or thread), as a drag-and-drop upload does. Slack serves its bytes
   * at `url_private_download` on its file host, only with the bot token as Bearer.
   */
  shareUserFile(input: {
    user: string;
    channel: string;
    threadTs?: string;
    name: string;
    data: Buffer;
    mimetype?: string;
    /** Seconds since the epoch; default now. */
    created?: number;
    size?: number;
    noLength?: boolean;
    redirectTo?: string;
    listedUrl?: string;
  }): FakeUserFile {
    const file: FakeUserFile = {
      id: `F${String(++this.idCounter).padStart(8, '0')}`,
      user: input.user,
      channel: input.channel,
      ...(input.threadTs === undefined ? {} : { threadTs: input.threadTs }),
      name: input.name,
      mimetype: input.mimetype ?? 'image/png',
      data: input.data,
      created: input.created ?? Math.floor(Date.now() / 1000),
      size: input.size ?? input.data.length,
      ...(input.noLength === true ? { noLength: true } : {}),
      ...(input.redirectTo === undefined ? {} : { redirectTo: input.redirectTo }),
      ...(input.listedUrl === undefined ? {} : { listedUrl: input.listedUrl }),
    };
    this.userFiles.push(file);
    return file;
  }

  /** `url_private_download` of a user file (Slack's is on `https://files.slack.com`). */
  fileUrl(file: FakeUserFile): string {
    return `${this.baseUrl}/files-pri/${FAKE_TEAM_ID}-${file.id}/download/${encodeURIComponent(file.name)}`;
  }

  private serveUserFile(req: IncomingMessage, path: string, res: ServerResponse): void {
    const authorization = req.headers.authorization;
    this.fileDownloads.push({ path, ...(authorization === undefined ? {} : { authorization }) });
    this.#waiting.notify();
    const id = /^\/files-pri\/[A-Z0-9]+-(F\d+)\//u.exec(path)?.[1];
    const file = this.userFiles.find((f) => f.id === id);
    // Without the token Slack answers with its sign-in page, never the file.
    if (file === undefined || bearer(authorization) !== this.botToken) {
      res.writeHead(
        file === undefined ? 404 : 302,
        file === undefined ? {} : { location: `${this.baseUrl}/signin` },
      );
      res.end();
      return;
    }
    if (file.redirectTo !== undefined) {
      res.writeHead(302, { location: file.redirectTo });
      res.end();
      return;
    }
    res.writeHead(200, {
      'content-type': file.mimetype,
      ...(file.noLength === true ? {} : { 'content-length': String(file.data.length) }),
    });
    res.end(file.data);
  }

  /** files.list answers with every file, whatever `channel` and `user` ask (a client must check). */
  listIgnoresFilters = false;

  private listFiles(p: Record<string, unknown>): Record<string, unknown> {
    const channel = this.listIgnoresFilters ? undefined : stringParam(p, 'channel');
    const user = this.listIgnoresFilters ? undefined : stringParam(p, 'user');
    const from = Number(stringParam(p, 'ts_from') ?? '0');
    const types = (stringParam(p, 'types') ?? 'all').split(',');
    const count = Number(stringParam(p, 'count') ?? '100');
    // Newest first, as Slack lists them.
    const files = [...this.userFiles]
      .reverse()
      .filter(
        (f) =>
          (channel === undefined || f.channel === channel) &&
          (user === undefined || f.user === user) &&
          f.created >= from &&
          (types.includes('all') || (types.includes('images') && f.mimetype.startsWith('image/'))),
      )
      .slice(0, count);
    return {
      ok: true,
      files: files.map((f) => ({
        id: f.id,
        created: f.created,
        timestamp: f.created,
        name: f.name,
        title: f.name,
        mimetype: f.mimetype,
        filetype: f.mimetype.split('/')[1] ?? 'binary',
        user: f.user,
        size: f.size,
        url_private: this.fileUrl(f).replace('/download/', '/'),
        url_private_download: f.listedUrl ?? this.fileUrl(f),
        channels: f.channel.startsWith('C') ? [f.channel] : [],
        groups: f.channel.startsWith('G') ? [f.channel] : [],
        ims: f.channel.startsWith('D') ? [f.channel] : [],
      })),
      paging: { count, total: files.length, page: 1, pages: 1 },
    };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req);
    const path = new URL(req.url ?? '/', this.baseUrl).pathname;
    if (req.method === 'GET' && path.startsWith('/files-pri/')) {
      this.serveUserFile(req, path, res);
      return;
    }
    if (req.method !== 'POST') {
      res.writeHead(405);
      res.end();
      return;
    }
    if (path.startsWith('/api/')) {
      await this.handleApi(path.slice('/api/'.length), req, body, res);
    } else if (path.startsWith('/upload/')) {
      await this.handleUpload(path.slice('/upload/'.length), req, body, res);
    } else if (path.startsWith('/response/')) {
      this.handleResponseUrl(path.slice('/response/'.length), body, res);
    } else {
      res.writeHead(404);
      res.end();
    }
  }

  private async handleApi(method: string, req: IncomingMessage, raw: Buffer, res: ServerResponse) {
    const params = parseParams(req.headers['content-type'], raw);
    const token = bearer(req.headers.authorization) ?? stringParam(params, 'token');
    if (this.injectFault(method, params, res)) return;
    if (method === 'apps.connections.open') {
      const ok = token === this.appToken;
      this.record(method, params, 200, ok);
      const wsUrl = `${this.baseUrl.replace(/^http/u, 'ws')}/socket`;
      json(res, 200, ok ? { ok: true, url: wsUrl } : { ok: false, error: 'invalid_auth' });
      return;
    }
    if (token !== this.botToken) {
      this.record(method, params, 200, false);
      json(res, 200, { ok: false, error: token === undefined ? 'not_authed' : 'invalid_auth' });
      return;
    }
    const result = this.dispatch(method, params);
    this.record(method, params, 200, result.ok === true);
    const holds = this.holds.get(method) ?? [];
    const index = holds.findIndex((h) => h.match(params));
    const held = index === -1 ? undefined : holds.splice(index, 1)[0];
    if (held !== undefined) {
      // Applied but unanswered: the app can't know it worked (a test kills it meanwhile).
      held.arrived(params);
      await held.released;
    }
    json(res, 200, result);
  }

  private dispatch(method: string, p: Record<string, unknown>): Record<string, unknown> {
    switch (method) {
      case 'auth.test':
        return {
          ok: true,
          url: 'https://fake.slack.test/',
          team: 'Fake Team',
          user: 'imagine',
          team_id: FAKE_TEAM_ID,
          user_id: FAKE_BOT_USER_ID,
          bot_id: FAKE_BOT_ID,
          is_enterprise_install: false,
        };
      case 'chat.postMessage':
        return this.postMessage(p);
      case 'chat.update':
        return this.updateMessage(p);
      case 'chat.delete': {
        const message = this.message(stringParam(p, 'channel') ?? '', stringParam(p, 'ts') ?? '');
        if (message === undefined) return { ok: false, error: 'message_not_found' };
        message.deleted = true;
        return { ok: true, channel: message.channel, ts: message.ts };
      }
      case 'chat.postEphemeral': {
        const channel = stringParam(p, 'channel');
        const user = stringParam(p, 'user');
        if (channel === undefined || user === undefined) return { ok: false, error: 'invalid_arguments' };
        const denied = this.checkChannel(channel);
        if (denied !== undefined) return denied;
        this.ephemerals.push({
          channel,
          user,
          text: stringParam(p, 'text') ?? '',
          blocks: blocksParam(p),
          via: 'chat.postEphemeral',
        });
        return { ok: true, message_ts: this.nextTs() };
      }
      case 'conversations.info': {
        const id = stringParam(p, 'channel') ?? '';
        const info = this.channels.get(id);
        if (info === undefined && !/^[CDG]/u.test(id)) return { ok: false, error: 'channel_not_found' };
        const isIm = info?.isIm ?? id.startsWith('D');
        return {
          ok: true,
          channel: {
            id,
            name: info?.name ?? id.toLowerCase(),
            is_im: isIm,
            is_channel: !isIm,
            is_member: info?.botIsMember ?? true,
          },
        };
      }
      case 'conversations.join': {
        const id = stringParam(p, 'channel') ?? '';
        // Only public channels can be joined; private ones need an invitation.
        if (!id.startsWith('C')) return { ok: false, error: 'method_not_supported_for_channel_type' };
        const info = this.channels.get(id);
        this.channels.set(id, { ...(info ?? { id }), botIsMember: true });
        return { ok: true, channel: { id, is_member: true } };
      }
      case 'files.getUploadURLExternal': {
        const filename = stringParam(p, 'filename');
        const length = Number(stringParam(p, 'length'));
        if (filename === undefined || !Number.isInteger(length) || length <= 0) {
          return { ok: false, error: 'invalid_arguments' };
        }
        const id = `F${String(++this.idCounter).padStart(8, '0')}`;
        const altText = stringParam(p, 'alt_text');
        const file: FakeFile =
          altText === undefined ? { id, filename, length } : { id, filename, length, altText };
        this.files.set(id, file);
        return { ok: true, upload_url: `${this.baseUrl}/upload/${id}`, file_id: id };
      }
      case 'files.completeUploadExternal':
        return this.completeUpload(p);
      case 'files.list':
        return this.listFiles(p);
      case 'users.info': {
        const id = stringParam(p, 'user') ?? '';
        const user = this.users.get(id);
        if (user === undefined) return { ok: false, error: 'user_not_found' };
        return {
          ok: true,
          user: {
            id,
            team_id: FAKE_TEAM_ID,
            name: id.toLowerCase(),
            deleted: false,
            is_bot: false,
            is_admin: user.isAdmin === true,
            is_owner: user.isOwner === true,
            is_primary_owner: false,
            is_restricted: false,
          },
        };
      }
      case 'views.open': {
        const trigger = stringParam(p, 'trigger_id');
        const rawView = p.view;
        const view = (typeof rawView === 'string' ? JSON.parse(rawView) : rawView) as
          | Record<string, unknown>
          | undefined;
        // Slack refuses a trigger used twice, or one older than 3 s; the fake checks the first.
        if (trigger === undefined || this.usedTriggers.has(trigger))
          return { ok: false, error: 'invalid_trigger_id' };
        if (view?.type !== 'modal') return { ok: false, error: 'invalid_arguments' };
        this.usedTriggers.add(trigger);
        const opened = { ...view, id: `V${++this.idCounter}` } as Record<string, unknown> & { id: string };
        this.views.push(opened);
        this.#waiting.notify();
        return { ok: true, view: opened };
      }
      case 'files.info': {
        const file = this.files.get(stringParam(p, 'file') ?? '');
        if (file === undefined) return { ok: false, error: 'file_not_found' };
        const shared = file.shared?.channel;
        const kind =
          shared === undefined
            ? undefined
            : shared.startsWith('D')
              ? 'ims'
              : shared.startsWith('G')
                ? 'groups'
                : 'channels';
        return {
          ok: true,
          file: {
            id: file.id,
            name: file.filename,
            title: file.title ?? file.filename,
            size: file.length,
            channels: kind === 'channels' ? [shared] : [],
            groups: kind === 'groups' ? [shared] : [],
            ims: kind === 'ims' ? [shared] : [],
            ...(shared === undefined
              ? {}
              : { shares: { [kind === 'channels' ? 'public' : 'private']: { [shared]: [{ ts: '0' }] } } }),
          },
        };
      }
      default:
        return { ok: false, error: 'unknown_method' };
    }
  }

  private checkChannel(channel: string): Record<string, unknown> | undefined {
    const info = this.channels.get(channel);
    if (info !== undefined && info.botIsMember === false) return { ok: false, error: 'not_in_channel' };
    return undefined;
  }

  private postMessage(p: Record<string, unknown>): Record<string, unknown> {
    const channel = stringParam(p, 'channel');
    if (channel === undefined) return { ok: false, error: 'channel_not_found' };
    const denied = this.checkChannel(channel);
    if (denied !== undefined) return denied;
    const text = stringParam(p, 'text') ?? '';
    const blocks = blocksParam(p);
    if (text === '' && blocks.length === 0) return { ok: false, error: 'no_text' };
    const threadTs = stringParam(p, 'thread_ts');
    const message = this.addMessage({ channel, text, blocks, files: [], ...(threadTs ? { threadTs } : {}) });
    return { ok: true, channel, ts: message.ts, message: { text, ts: message.ts, blocks } };
  }

  private updateMessage(p: Record<string, unknown>): Record<string, unknown> {
    const channel = stringParam(p, 'channel') ?? '';
    const message = this.message(channel, stringParam(p, 'ts') ?? '');
    if (message === undefined || message.deleted) return { ok: false, error: 'message_not_found' };
    const text = stringParam(p, 'text');
    if (text !== undefined) message.text = text;
    if (p.blocks !== undefined) message.blocks = blocksParam(p);
    message.edits += 1;
    message.history.push(shownText(message));
    return { ok: true, channel, ts: message.ts, text: message.text };
  }

  private completeUpload(p: Record<string, unknown>): Record<string, unknown> {
    const list = jsonParam(p, 'files');
    if (!Array.isArray(list) || list.length === 0) return { ok: false, error: 'invalid_arguments' };
    const files: FakeFile[] = [];
    for (const entry of list) {
      const id = typeof entry === 'object' && entry !== null ? (entry as { id?: unknown }).id : undefined;
      const file = typeof id === 'string' ? this.files.get(id) : undefined;
      // Slack refuses to complete a file whose bytes never arrived.
      if (file === undefined || file.bytes === undefined) return { ok: false, error: 'file_not_found' };
      const title = (entry as { title?: unknown }).title;
      if (typeof title === 'string') file.title = title;
      files.push(file);
    }
    const channel = stringParam(p, 'channel_id');
    const threadTs = stringParam(p, 'thread_ts');
    const initialComment = stringParam(p, 'initial_comment');
    if (channel !== undefined) {
      const denied = this.checkChannel(channel);
      if (denied !== undefined) return denied;
      for (const file of files) {
        file.shared = {
          channel,
          ...(threadTs ? { threadTs } : {}),
          ...(initialComment !== undefined ? { initialComment } : {}),
        };
      }
      // Slack shares the files as one message from the bot; its ts is not in this answer.
      this.addMessage({
        channel,
        text: initialComment ?? '',
        blocks: blocksParam(p),
        files,
        ...(threadTs ? { threadTs } : {}),
      });
    }
    return {
      ok: true,
      files: files.map((f) => ({ id: f.id, name: f.filename, title: f.title ?? f.filename, size: f.length })),
    };
  }

  private addMessage(init: {
    channel: string;
    text: string;
    blocks: readonly SlackBlock[];
    files: readonly FakeFile[];
    threadTs?: string;
  }): FakeMessage {
    const message: FakeMessage = {
      ...init,
      ts: this.nextTs(),
      edits: 0,
      deleted: false,
      history: [shownText(init)],
      postedAt: Date.now(),
    };
    this.messages.push(message);
    return message;
  }

  private async handleUpload(id: string, req: IncomingMessage, raw: Buffer, res: ServerResponse) {
    const params = { file_id: id, bytes: raw.length };
    if (this.injectFault('upload', params, res)) return;
    const file = this.files.get(id);
    if (file === undefined) {
      this.record('upload', params, 404, false);
      res.writeHead(404);
      res.end();
      return;
    }
    // @slack/web-api sends the bytes as multipart/form-data; a raw body is accepted too, as Slack does.
    let bytes = raw;
    const contentType = req.headers['content-type'] ?? '';
    if (contentType.startsWith('multipart/form-data')) {
      const form = await new Response(new Uint8Array(raw), {
        headers: { 'content-type': contentType },
      }).formData();
      let part: File | undefined;
      form.forEach((value) => {
        if (part === undefined && typeof value !== 'string') part = value;
      });
      if (part === undefined) {
        this.record('upload', params, 400, false);
        res.writeHead(400);
        res.end();
        return;
      }
      bytes = Buffer.from(await part.arrayBuffer());
    }
    file.bytes = bytes;
    this.record('upload', { ...params, bytes: bytes.length }, 200, true);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`OK - ${bytes.length}`);
  }

  private handleResponseUrl(id: string, raw: Buffer, res: ServerResponse) {
    let payload: Record<string, unknown>;
    try {
      payload = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
    } catch {
      payload = {};
    }
    const params = { ...payload, response_url_id: id };
    if (this.injectFault('response_url', params, res)) return;
    const target = this.responseTargets.get(id);
    if (target === undefined || target.uses >= RESPONSE_URL_MAX_USES) {
      this.record('response_url', params, 404, false);
      res.writeHead(404);
      res.end('expired_url');
      return;
    }
    target.uses += 1;
    const text = typeof payload.text === 'string' ? payload.text : '';
    const blocks = Array.isArray(payload.blocks) ? (payload.blocks as SlackBlock[]) : [];
    const original =
      target.messageTs === undefined ? undefined : this.message(target.channel, target.messageTs);
    if (payload.delete_original === true && original !== undefined) {
      original.deleted = true;
    } else if (payload.replace_original === true && original !== undefined) {
      original.text = text;
      original.blocks = blocks;
      original.edits += 1;
      original.history.push(shownText(original));
    } else if (payload.response_type === 'in_channel') {
      const threadTs = typeof payload.thread_ts === 'string' ? payload.thread_ts : undefined;
      this.addMessage({
        channel: target.channel,
        text,
        blocks,
        files: [],
        ...(threadTs ? { threadTs } : {}),
      });
    } else {
      this.ephemerals.push({
        channel: target.channel,
        ...(target.user !== undefined ? { user: target.user } : {}),
        text,
        blocks,
        via: 'response_url',
      });
    }
    this.record('response_url', params, 200, true);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  }
}

/** Every button in a message's actions blocks. */
export function buttonsOf(message: { readonly blocks: readonly SlackBlock[] }): SlackBlockElement[] {
  return message.blocks.flatMap((b) =>
    b.type === 'actions' ? (b.elements ?? []).filter((e) => e.type === 'button') : [],
  );
}

/** The message's main text as a client shows it: its rich text when it has some, else `text`. */
export function shownText(message: {
  readonly text: string;
  readonly blocks: readonly SlackBlock[];
}): string {
  const rich = message.blocks.filter((b) => b.type === 'rich_text');
  return rich.length > 0 ? rich.map(richTextOf).join('\n') : message.text;
}

/** All text a message shows: its `text`, every section/context text and rich text in its blocks. */
export function textOf(message: { readonly text: string; readonly blocks: readonly SlackBlock[] }): string {
  const parts = [message.text];
  for (const block of message.blocks) {
    if (block.text !== undefined) parts.push(block.text.text);
    if (block.type === 'rich_text') {
      parts.push(richTextOf(block));
      continue;
    }
    for (const element of block.elements ?? []) {
      if (element.type === 'mrkdwn' || element.type === 'plain_text') {
        parts.push(String((element as { text?: unknown }).text ?? ''));
      }
    }
  }
  return parts.join('\n');
}

/**
 * What a rich_text block shows, written as mrkdwn would write it: text elements as they are, styled
 * ones between `*` (bold) or backticks (code), users as `<@U…>` mentions.
 */
export function richTextOf(block: SlackBlock): string {
  let out = '';
  for (const section of block.elements ?? []) {
    for (const element of (section as { elements?: readonly Record<string, unknown>[] }).elements ?? []) {
      if (element.type === 'text') {
        const style = (element.style ?? {}) as { bold?: boolean; code?: boolean };
        const mark = style.code === true ? '`' : style.bold === true ? '*' : '';
        out += `${mark}${String(element.text ?? '')}${mark}`;
      } else if (element.type === 'user') out += `<@${String(element.user_id)}>`;
      else out += `[${String(element.type)}]`;
    }
  }
  return out;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function parseParams(contentType: string | undefined, raw: Buffer): Record<string, unknown> {
  const text = raw.toString('utf8');
  if (contentType?.startsWith('application/json')) {
    try {
      return JSON.parse(text) as Record<string, unknown>;
    } catch {
      return {};
    }
  }
  const parsed = parseQuery(text);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(parsed)) out[key] = Array.isArray(value) ? value[0] : value;
  return out;
}

function bearer(header: string | undefined): string | undefined {
  const match = /^Bearer (.+)$/u.exec(header ?? '');
  return match?.[1];
}

function stringParam(params: Record<string, unknown>, key: string): string | undefined {
  const value = params[key];
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return undefined;
}

/** Form-encoded calls carry nested values as JSON strings; JSON calls carry them as is. */
function jsonParam(params: Record<string, unknown>, key: string): unknown {
  const value = params[key];
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value) as unknown;
  } catch {
    return undefined;
  }
}

function blocksParam(params: Record<string, unknown>): SlackBlock[] {
  const value = jsonParam(params, 'blocks');
  return Array.isArray(value) ? (value as SlackBlock[]) : [];
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(body));
}
