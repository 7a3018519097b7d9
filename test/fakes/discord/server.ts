import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type {
  APIActionRowComponent,
  APIApplicationCommand,
  APIAttachment,
  APIChannel,
  APIChatInputApplicationCommandInteraction,
  APIComponentInMessageActionRow,
  APIMessage,
  APIMessageComponentInteraction,
} from 'discord.js';
import { type WebSocket, WebSocketServer } from 'ws';
import { Waiters } from '../waiters.ts';
import { apiMember, apiUser, type FakeUser, guildCreate, snowflake, textChannel } from './payloads.ts';

/**
 * A local fake Discord speaking the real protocol, for end-to-end tests with the real discord.js
 * client: REST under /api/v10 (JSON and multipart/form-data with payload_json + files[n]), and a
 * WebSocket gateway (HELLO, heartbeat ACK, IDENTIFY → READY → GUILD_CREATE, dispatches). Tests inject
 * interactions, read every request from `requests`, and inject faults (429 with retry-after, 5xx).
 * It enforces the rules a real bot trips over: one callback per interaction within 3 s, webhook
 * tokens valid 15 min, custom_id ≤ 100 chars, content ≤ 2000 chars, the attachment size limit.
 */

export interface FakeFile {
  readonly field: string;
  readonly name: string;
  readonly contentType: string;
  readonly data: Buffer;
}

export interface RecordedRequest {
  readonly method: string;
  /** Path after /api/v10, without the query. */
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: IncomingMessage['headers'];
  /** JSON body or multipart payload_json; undefined when there was none. */
  readonly body: unknown;
  readonly files: readonly FakeFile[];
  /** `performance.now()` when the request arrived. */
  readonly receivedAt: number;
  /** `Date.now()` when the request arrived (to compare with timestamps from other processes). */
  readonly receivedAtMs: number;
  status: number;
}

export interface Fault {
  readonly method?: string;
  readonly path: RegExp;
  readonly status: number;
  /** Seconds, sent as Retry-After (and retry_after in the body) with 429. */
  readonly retryAfter?: number;
  /** Further condition on the parsed request (e.g. only the edit that carries the grid). */
  readonly match?: (request: RecordedRequest) => boolean;
  /** How many matching requests get the fault. @defaultValue 1 */
  times?: number;
  /** Discord's JSON error code and message (e.g. 50013 Missing Permissions). @defaultValue 0 */
  readonly code?: number;
  readonly message?: string;
}

export interface FakeDiscordOptions {
  readonly token: string;
  /** @defaultValue a fresh snowflake */
  readonly appId?: string;
  /** Time an interaction has to be acknowledged. @defaultValue 3000 */
  readonly ackDeadlineMs?: number;
  /** How long an interaction token works for webhooks. @defaultValue 15 min */
  readonly tokenTtlMs?: number;
  /** @defaultValue 10 MiB */
  readonly maxUploadBytes?: number;
  /** Gateway heartbeat interval sent in HELLO. @defaultValue 41250 */
  readonly heartbeatIntervalMs?: number;
  /**
   * Benchmarks: multipart bodies are not decoded; only each part's name and filename are read (so
   * the fake's own parsing does not delay what it measures) and file bytes are not kept.
   * @defaultValue false
   */
  readonly lightweight?: boolean;
}

interface InteractionState {
  readonly id: string;
  readonly token: string;
  readonly type: 2 | 3;
  readonly channelId: string;
  readonly createdAt: number;
  acknowledged: boolean;
  acknowledgedAt?: number;
  /** Original response message id (type 4/5), or the component's message (type 6/7). */
  originalId?: string | undefined;
  sourceMessageId?: string | undefined;
}

export interface InjectedInteraction {
  readonly id: string;
  readonly token: string;
  /** `performance.now()` just before the dispatch was written to the socket. */
  readonly sentAt: number;
}

const API_PREFIX = '/api/v10';

/** Shaped like Discord's: base64url of `interaction:<id>:<secret>`. */
function interactionToken(id: string): string {
  return Buffer.from(`interaction:${id}:${randomBytes(48).toString('base64url')}`).toString('base64url');
}
const EPHEMERAL = 1 << 6;
const LOADING = 1 << 7;
/** The one flag Discord lets a sender set on a new message or an edit (besides EPHEMERAL on interactions). */
const SUPPRESS_EMBEDS = 1 << 2;

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** A request the fake applied but has not answered yet (see `FakeDiscord.holdNext`). */
export interface HeldResponse {
  /** Resolves once a matching request has been applied (its message exists) and its answer is held. */
  readonly arrived: Promise<RecordedRequest>;
  /** Sends the held answer (to a socket that may be dead by then). */
  release(): void;
}

export class FakeDiscord {
  readonly token: string;
  readonly appId: string;
  readonly botUser: FakeUser;
  readonly guildId = snowflake();
  readonly channelId = snowflake();
  /** Channels marked age-restricted (NSFW): interactions in them carry `channel.nsfw: true`, as Discord's do. */
  readonly #ageRestricted = new Set<string>();

  /**
   * Marks a channel age-restricted (or not), as a moderator would: sessions get CHANNEL_UPDATE (which
   * keeps discord.js's channel cache current), and later interactions there carry the flag.
   */
  setAgeRestricted(channelId: string, on: boolean): void {
    if (on) this.#ageRestricted.add(channelId);
    else this.#ageRestricted.delete(channelId);
    this.dispatch('CHANNEL_UPDATE', { ...textChannel(channelId, this.guildId, 'general'), nsfw: on });
  }
  readonly ownerId = snowflake();
  readonly requests: RecordedRequest[] = [];
  /** The first interaction callback request of each interaction id (cheap lookup for benchmarks). */
  readonly callbacks = new Map<string, RecordedRequest>();
  readonly messages = new Map<string, APIMessage>();
  readonly attachments = new Map<
    string,
    { data: Buffer; contentType: string; noLength?: boolean; redirectTo?: string }
  >();
  /** Every GET of a file from the fake's CDN, with its headers. */
  readonly fileRequests: { path: string; headers: IncomingMessage['headers'] }[] = [];
  readonly globalCommands: APIApplicationCommand[] = [];
  readonly guildCommands = new Map<string, APIApplicationCommand[]>();
  readonly interactions = new Map<string, InteractionState>();
  readonly faults: Fault[] = [];
  /** Gateway payloads received from clients (heartbeats, identify…). */
  readonly gatewayReceived: { op: number; d: unknown }[] = [];
  identifyCount = 0;
  readonly #options: Required<Omit<FakeDiscordOptions, 'appId' | 'token'>>;
  readonly #server: Server;
  readonly #wss: WebSocketServer;
  readonly #sessions = new Set<{ ws: WebSocket; seq: number; ready: boolean }>();
  readonly #waiting = new Waiters('fake discord');
  /** Interaction token that posted each webhook message (only that token may edit it). */
  readonly #messageToken = new Map<string, string>();
  readonly #holds: {
    match: (r: RecordedRequest) => boolean;
    arrived: (r: RecordedRequest) => void;
    released: Promise<void>;
  }[] = [];
  #port = 0;

  private constructor(options: FakeDiscordOptions) {
    this.token = options.token;
    this.appId = options.appId ?? snowflake();
    this.botUser = { id: this.appId, username: 'imagine' };
    this.#options = {
      ackDeadlineMs: options.ackDeadlineMs ?? 3000,
      tokenTtlMs: options.tokenTtlMs ?? 15 * 60_000,
      maxUploadBytes: options.maxUploadBytes ?? 10 * 1024 * 1024,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 41_250,
      lightweight: options.lightweight ?? false,
    };
    this.#server = createServer((req, res) => void this.#handle(req, res));
    this.#wss = new WebSocketServer({ server: this.#server, path: '/gateway' });
    this.#wss.on('connection', (ws, req) => this.#onGateway(ws, req));
  }

  static async start(options: FakeDiscordOptions): Promise<FakeDiscord> {
    const fake = new FakeDiscord(options);
    await new Promise<void>((resolve) => fake.#server.listen(0, '127.0.0.1', resolve));
    fake.#port = (fake.#server.address() as AddressInfo).port;
    return fake;
  }

  /** REST base to give discord.js (`rest.api`), like `https://discord.com/api`. */
  get apiUrl(): string {
    return `http://127.0.0.1:${this.#port}/api`;
  }

  get gatewayUrl(): string {
    return `ws://127.0.0.1:${this.#port}/gateway`;
  }

  /** Number of gateway sessions that completed IDENTIFY and got READY. */
  get readySessions(): number {
    return [...this.#sessions].filter((s) => s.ready).length;
  }

  async close(): Promise<void> {
    for (const session of this.#sessions) session.ws.terminate();
    this.#sessions.clear();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Drops every gateway connection (as Discord does on a restart or a network blip). */
  disconnectGateway(code = 4000): void {
    for (const session of this.#sessions) session.ws.close(code, 'fake: disconnected');
  }

  injectFault(fault: Fault): void {
    this.faults.push({ ...fault, times: fault.times ?? 1 });
  }

  // ——— interactions ———

  /** Dispatches a CHAT_INPUT interaction (a slash command) to every ready gateway session. */
  slashCommand(input: {
    name?: string;
    /** Options of a subcommand (sent nested under it, as Discord does), instead of the command's own. */
    subcommand?: string;
    options: Readonly<Record<string, string | number | boolean>>;
    /** Attachment options: option name → a file from `userAttachment` (sent in `data.resolved`, as Discord does). */
    attachments?: Readonly<Record<string, APIAttachment>>;
    user: FakeUser;
    channelId?: string;
    /** The member's permissions in the channel (a bit field, as a decimal string). @defaultValue a plain member's */
    permissions?: string;
    /** Reuse an id/token to deliver the same interaction again. */
    replay?: InjectedInteraction;
  }): InjectedInteraction {
    const id = input.replay?.id ?? snowflake();
    const token = input.replay?.token ?? interactionToken(id);
    const channelId = input.channelId ?? this.channelId;
    const name = input.name ?? 'imagine';
    const command = this.#commandNamed(name);
    const sub = command?.options?.find((o) => o.name === input.subcommand) as
      | { options?: { name: string; type: number }[] }
      | undefined;
    const declaredOptions = input.subcommand === undefined ? command?.options : sub?.options;
    const given = Object.entries(input.options).map(([key, value]) => {
      const declared = declaredOptions?.find((o) => o.name === key);
      const type = typeof value === 'boolean' ? 5 : typeof value === 'number' ? 10 : 3;
      return { name: key, type: declared?.type ?? type, value };
    });
    const files = Object.entries(input.attachments ?? {});
    for (const [key, file] of files) given.push({ name: key, type: 11, value: file.id });
    const options =
      input.subcommand === undefined ? given : [{ name: input.subcommand, type: 1, options: given }];
    const base = this.#interactionBase(id, token, 2, input.user, channelId);
    const payload = {
      ...base,
      member:
        input.permissions === undefined ? base.member : { ...base.member, permissions: input.permissions },
      data: {
        id: command?.id ?? snowflake(),
        name,
        type: 1,
        options,
        guild_id: this.guildId,
        ...(files.length === 0
          ? {}
          : { resolved: { attachments: Object.fromEntries(files.map(([, f]) => [f.id, f])) } }),
      },
    } as unknown as APIChatInputApplicationCommandInteraction;
    return this.#dispatchInteraction(payload, { id, token, type: 2, channelId }, input.replay !== undefined);
  }

  /**
   * A file a user attached to a command, served by the fake as Discord's CDN serves it
   * (`GET <fileOrigin>/attachments/<id>/<name>`). `noLength` serves it chunked, without Content-Length;
   * `redirectTo` answers 302 to that URL instead of the file.
   */
  userAttachment(input: {
    name: string;
    data: Buffer;
    contentType?: string;
    /** What `size` Discord reports (default: the real size). */
    size?: number;
    noLength?: boolean;
    redirectTo?: string;
  }): APIAttachment {
    const id = snowflake();
    this.attachments.set(id, {
      data: input.data,
      contentType: input.contentType ?? 'image/png',
      ...(input.noLength === true ? { noLength: true } : {}),
      ...(input.redirectTo === undefined ? {} : { redirectTo: input.redirectTo }),
    });
    const url = `${this.fileOrigin}/attachments/${this.channelId}/${id}/${encodeURIComponent(input.name)}?ex=0&is=0&hm=fake`;
    return {
      id,
      filename: input.name,
      size: input.size ?? input.data.length,
      url,
      proxy_url: url,
      content_type: input.contentType ?? 'image/png',
    };
  }

  /** Origin of the fake's CDN (Discord's is `https://cdn.discordapp.com`). */
  get fileOrigin(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** Dispatches a MESSAGE_COMPONENT (button) interaction for a button on a stored message. */
  pressButton(input: {
    messageId: string;
    customId: string;
    user: FakeUser;
    /** Skip the check that the message carries this custom_id (for tampering tests). */
    forge?: boolean;
    replay?: InjectedInteraction;
  }): InjectedInteraction {
    const message = this.messages.get(input.messageId);
    if (message === undefined) throw new Error(`fake: no message ${input.messageId}`);
    if (input.forge !== true && !customIdsOf(message).includes(input.customId)) {
      throw new Error(`fake: message ${input.messageId} has no button ${input.customId}`);
    }
    const id = input.replay?.id ?? snowflake();
    const token = input.replay?.token ?? interactionToken(id);
    const payload = {
      ...this.#interactionBase(id, token, 3, input.user, message.channel_id),
      message,
      data: { custom_id: input.customId, component_type: 2 },
    } as unknown as APIMessageComponentInteraction;
    return this.#dispatchInteraction(
      payload,
      { id, token, type: 3, channelId: message.channel_id, sourceMessageId: message.id },
      input.replay !== undefined,
    );
  }

  /** Sends any dispatch event to every ready session. */
  dispatch(t: string, d: unknown): void {
    for (const session of this.#sessions) {
      if (!session.ready) continue;
      session.seq++;
      session.ws.send(JSON.stringify({ op: 0, t, s: session.seq, d }));
    }
  }

  /** The message an interaction's original response became (type 4/5). */
  originalMessage(interaction: { id: string }): APIMessage | undefined {
    const id = this.interactions.get(interaction.id)?.originalId;
    return id === undefined ? undefined : this.messages.get(id);
  }

  /** Messages posted with an interaction's token (its response and follow-ups), oldest first. */
  messagesOf(interaction: { token: string }): APIMessage[] {
    return [...this.messages.values()].filter((m) => this.#messageToken.get(m.id) === interaction.token);
  }

  attachmentData(attachment: APIAttachment): Buffer {
    const stored = this.attachments.get(attachment.id);
    if (stored === undefined) throw new Error(`fake: no attachment ${attachment.id}`);
    return stored.data;
  }

  /**
   * The next request matching `match` is applied as usual, but its answer is held until `release()`:
   * a deterministic point "the platform has it, the bot doesn't know yet" to kill a bot at.
   */
  holdNext(match: (request: RecordedRequest) => boolean): HeldResponse {
    let arrived: (r: RecordedRequest) => void = () => {};
    let release: () => void = () => {};
    const arrivedPromise = new Promise<RecordedRequest>((resolve) => {
      arrived = resolve;
    });
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.#holds.push({ match, arrived, released });
    return { arrived: arrivedPromise, release };
  }

  /** Resolves when `predicate` holds (checked after every recorded request), or rejects after `timeoutMs`. */
  waitFor<T>(predicate: () => T | undefined | false, timeoutMs = 20_000, what = 'condition'): Promise<T> {
    return this.#waiting.waitFor(predicate, timeoutMs, what);
  }

  /** Requests matching method and path pattern, with the given status class. */
  find(method: string, path: RegExp, status?: number): RecordedRequest[] {
    return this.requests.filter(
      (r) => r.method === method && path.test(r.path) && (status === undefined || r.status === status),
    );
  }

  // ——— gateway ———

  #onGateway(ws: WebSocket, req: IncomingMessage): void {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.searchParams.get('encoding') !== 'json' || url.searchParams.get('v') !== '10') {
      ws.close(4012, 'Invalid API version or encoding');
      return;
    }
    if (url.searchParams.has('compress')) {
      ws.close(4000, 'fake: transport compression not supported');
      return;
    }
    const session = { ws, seq: 0, ready: false };
    this.#sessions.add(session);
    ws.on('close', () => this.#sessions.delete(session));
    ws.send(
      JSON.stringify({
        op: 10,
        d: { heartbeat_interval: this.#options.heartbeatIntervalMs },
        s: null,
        t: null,
      }),
    );
    ws.on('message', (raw) => {
      let payload: { op: number; d: unknown };
      try {
        payload = JSON.parse(raw.toString()) as { op: number; d: unknown };
      } catch {
        ws.close(4002, 'Decode error');
        return;
      }
      this.gatewayReceived.push(payload);
      switch (payload.op) {
        case 1:
          ws.send(JSON.stringify({ op: 11, d: null, s: null, t: null }));
          break;
        case 2:
          this.#identify(
            session,
            payload.d as { token?: string; intents?: number; shard?: [number, number] },
          );
          break;
        case 6:
          // No resumable sessions here: tell the client to identify afresh.
          ws.send(JSON.stringify({ op: 9, d: false, s: null, t: null }));
          break;
        default:
          break;
      }
      this.#waiting.notify();
    });
  }

  #identify(
    session: { ws: WebSocket; seq: number; ready: boolean },
    d: { token?: string; intents?: number; shard?: [number, number] },
  ): void {
    const token = (d.token ?? '').replace(/^Bot /u, '');
    if (token !== this.token) {
      session.ws.close(4004, 'Authentication failed.');
      return;
    }
    if (session.ready) {
      session.ws.close(4005, 'Already authenticated.');
      return;
    }
    this.identifyCount++;
    session.ready = true;
    const sessionId = randomBytes(16).toString('hex');
    session.seq++;
    session.ws.send(
      JSON.stringify({
        op: 0,
        t: 'READY',
        s: session.seq,
        d: {
          v: 10,
          user: { ...apiUser(this.botUser, true), verified: true, mfa_enabled: false, flags: 0 },
          guilds: [{ id: this.guildId, unavailable: true }],
          session_id: sessionId,
          session_type: 'normal',
          resume_gateway_url: this.gatewayUrl,
          shard: d.shard ?? [0, 1],
          application: { id: this.appId, flags: 0 },
          private_channels: [],
          presences: [],
          relationships: [],
          guild_join_requests: [],
          user_settings: {},
          geo_ordered_rtc_regions: [],
          auth_session_id_hash: '',
          _trace: ['fake-discord'],
        },
      }),
    );
    session.seq++;
    const channels: APIChannel[] = [textChannel(this.channelId, this.guildId, 'general')];
    session.ws.send(
      JSON.stringify({
        op: 0,
        t: 'GUILD_CREATE',
        s: session.seq,
        d: guildCreate(this.guildId, 'Fake Guild', channels, this.ownerId, new Date().toISOString()),
      }),
    );
  }

  #interactionBase(id: string, token: string, type: 2 | 3, user: FakeUser, channelId: string) {
    return {
      id,
      application_id: this.appId,
      type,
      guild_id: this.guildId,
      guild: { id: this.guildId, locale: 'en-US', features: [] },
      channel_id: channelId,
      channel: {
        ...textChannel(channelId, this.guildId, 'general'),
        nsfw: this.#ageRestricted.has(channelId),
      },
      member: apiMember(user, new Date(0).toISOString()),
      token,
      version: 1,
      app_permissions: '2248473465835073',
      locale: 'en-US',
      guild_locale: 'en-US',
      entitlements: [],
      authorizing_integration_owners: { '0': this.guildId },
      context: 0,
      attachment_size_limit: this.#options.maxUploadBytes,
    };
  }

  #dispatchInteraction(
    payload: unknown,
    state: { id: string; token: string; type: 2 | 3; channelId: string; sourceMessageId?: string },
    replay: boolean,
  ): InjectedInteraction {
    if (!replay) {
      this.interactions.set(state.id, {
        ...state,
        createdAt: Date.now(),
        acknowledged: false,
      });
    }
    const sentAt = performance.now();
    this.dispatch('INTERACTION_CREATE', payload);
    return { id: state.id, token: state.token, sentAt };
  }

  #commandNamed(name: string): APIApplicationCommand | undefined {
    return [...this.globalCommands, ...[...this.guildCommands.values()].flat()].find((c) => c.name === name);
  }

  // ——— REST ———

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const receivedAt = performance.now();
    const url = new URL(req.url ?? '/', 'http://localhost');
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);

    if (req.method === 'GET' && url.pathname.startsWith('/attachments/')) {
      // The bot's own uploads are `/attachments/<id>`; users' files `/attachments/<channel>/<id>/<name>`.
      const segments = url.pathname.split('/');
      const id = (segments.length > 4 ? segments[3] : segments[2]) ?? '';
      this.fileRequests.push({ path: url.pathname, headers: req.headers });
      const stored = this.attachments.get(id);
      if (stored === undefined) return send(res, 404, { message: '404: Not Found', code: 0 });
      if (stored.redirectTo !== undefined) {
        res.writeHead(302, { location: stored.redirectTo });
        res.end();
        return;
      }
      res.writeHead(200, {
        'content-type': stored.contentType,
        ...(stored.noLength === true ? {} : { 'content-length': stored.data.length }),
      });
      res.end(stored.data);
      return;
    }
    if (!url.pathname.startsWith(API_PREFIX)) return send(res, 404, { message: '404: Not Found', code: 0 });
    // Segments arrive percent-encoded (`%40original`); record and route them decoded.
    const path = url.pathname
      .slice(API_PREFIX.length)
      .split('/')
      .map((segment) => decodeURIComponent(segment))
      .join('/');
    const method = req.method ?? 'GET';
    let body: unknown;
    let files: FakeFile[] = [];
    const record: RecordedRequest = {
      method,
      path,
      query: url.searchParams,
      headers: req.headers,
      body: undefined,
      files: [],
      receivedAt,
      receivedAtMs: Date.now(),
      status: 0,
    };
    try {
      ({ body, files } = this.#options.lightweight
        ? skimBody(req.headers['content-type'], raw)
        : await parseBody(req.headers['content-type'], raw));
      Object.assign(record, { body, files });
    } catch (error) {
      this.requests.push(record);
      record.status = 400;
      send(res, 400, { message: `fake: unparseable body: ${String(error)}`, code: 50109 });
      this.#waiting.notify();
      return;
    }
    this.requests.push(record);
    const callbackOf = /^\/interactions\/(\d+)\/[^/]+\/callback$/u.exec(path)?.[1];
    if (method === 'POST' && callbackOf !== undefined && !this.callbacks.has(callbackOf)) {
      this.callbacks.set(callbackOf, record);
    }

    const fault = this.faults.find(
      (f) =>
        (f.times ?? 0) > 0 &&
        (f.method === undefined || f.method === method) &&
        f.path.test(path) &&
        (f.match === undefined || f.match(record)),
    );
    if (fault !== undefined) {
      fault.times = (fault.times ?? 1) - 1;
      record.status = fault.status;
      if (fault.status === 429) {
        const retryAfter = fault.retryAfter ?? 0.1;
        res.writeHead(429, {
          'content-type': 'application/json',
          'retry-after': String(retryAfter),
          'x-ratelimit-scope': 'user',
          'x-ratelimit-limit': '5',
          'x-ratelimit-remaining': '0',
          'x-ratelimit-reset-after': String(retryAfter),
          'x-ratelimit-bucket': 'fakebucket',
        });
        res.end(
          JSON.stringify({ message: 'You are being rate limited.', retry_after: retryAfter, global: false }),
        );
      } else {
        send(res, fault.status, {
          message: fault.message ?? `${fault.status}: fake fault`,
          code: fault.code ?? 0,
        });
      }
      this.#waiting.notify();
      return;
    }

    try {
      const result = this.#route(method, path, url.searchParams, req.headers, body, files);
      record.status = result.status;
      const hold = this.#holds.findIndex((h) => h.match(record));
      if (hold !== -1) {
        // Applied but unanswered: the client can't know it worked (a test kills it meanwhile).
        const [held] = this.#holds.splice(hold, 1);
        held!.arrived(record);
        this.#waiting.notify();
        await held!.released;
      }
      if (result.status === 204) {
        res.writeHead(204);
        res.end();
      } else {
        send(res, result.status, result.body);
      }
    } catch (error) {
      if (error instanceof HttpError) {
        record.status = error.status;
        send(res, error.status, { message: error.message, code: error.code, ...error.extra });
      } else {
        record.status = 500;
        send(res, 500, { message: `500: fake crashed: ${String(error)}`, code: 0 });
      }
    }
    this.#waiting.notify();
  }

  #route(
    method: string,
    path: string,
    query: URLSearchParams,
    headers: IncomingMessage['headers'],
    body: unknown,
    files: FakeFile[],
  ): { status: number; body?: unknown } {
    const parts = path.split('/').filter((p) => p !== '');
    const isWebhookOrCallback = parts[0] === 'webhooks' || parts[0] === 'interactions';
    if (!isWebhookOrCallback && headers.authorization !== `Bot ${this.token}`) {
      throw new HttpError(401, 0, '401: Unauthorized');
    }
    const key = `${method} ${parts.map((p, i) => (i === 0 ? p : /^\d+$/u.test(p) ? ':id' : p)).join('/')}`;
    switch (true) {
      case method === 'GET' && path === '/gateway/bot':
        return {
          status: 200,
          body: {
            url: this.gatewayUrl,
            shards: 1,
            session_start_limit: { total: 1000, remaining: 999, reset_after: 14_400_000, max_concurrency: 1 },
          },
        };
      case method === 'GET' && path === '/gateway':
        return { status: 200, body: { url: this.gatewayUrl } };
      case method === 'GET' && path === '/users/@me':
        return { status: 200, body: { ...apiUser(this.botUser, true), verified: true, flags: 0 } };
      case method === 'GET' && path === '/applications/@me':
        return { status: 200, body: { id: this.appId, name: 'imagine', flags: 0, bot_public: true } };
      case parts[0] === 'applications' && parts[2] === 'commands':
        return this.#commands(method, parts[1]!, undefined, body);
      case parts[0] === 'applications' && parts[2] === 'guilds' && parts[4] === 'commands':
        return this.#commands(method, parts[1]!, parts[3]!, body);
      case method === 'POST' && parts[0] === 'interactions' && parts[3] === 'callback':
        return this.#callback(parts[1]!, parts[2]!, query, body, files);
      case parts[0] === 'webhooks':
        return this.#webhook(method, parts.slice(1), body, files);
      case parts[0] === 'channels' && parts[2] === 'messages':
        return this.#channelMessages(method, parts[1]!, parts[3], body, files);
      case method === 'GET' && parts[0] === 'channels' && parts.length === 2:
        return { status: 200, body: textChannel(parts[1]!, this.guildId, 'general') };
      default:
        throw new HttpError(404, 0, `404: Not Found (fake has no ${key})`);
    }
  }

  #commands(
    method: string,
    appId: string,
    guildId: string | undefined,
    body: unknown,
  ): { status: number; body?: unknown } {
    if (appId !== this.appId) throw new HttpError(403, 50001, 'Missing Access');
    if (guildId !== undefined && guildId !== this.guildId) throw new HttpError(403, 50001, 'Missing Access');
    const list = guildId === undefined ? this.globalCommands : (this.guildCommands.get(guildId) ?? []);
    if (method === 'GET') return { status: 200, body: list };
    if (method !== 'PUT') throw new HttpError(405, 0, '405: Method Not Allowed');
    if (!Array.isArray(body)) throw new HttpError(400, 50035, 'Invalid Form Body');
    const next: APIApplicationCommand[] = (body as Record<string, unknown>[]).map((c) => {
      validateCommand(c);
      // Bulk overwrite keeps the id of a command with the same name: registering again is idempotent.
      const existing = list.find((e) => e.name === c.name);
      return {
        ...(c as object),
        id: existing?.id ?? snowflake(),
        application_id: this.appId,
        version: snowflake(),
        type: (c.type as number | undefined) ?? 1,
        default_member_permissions: null,
        ...(guildId === undefined ? {} : { guild_id: guildId }),
      } as APIApplicationCommand;
    });
    if (guildId === undefined) this.globalCommands.splice(0, this.globalCommands.length, ...next);
    else this.guildCommands.set(guildId, next);
    return { status: 200, body: next };
  }

  #callback(
    id: string,
    token: string,
    query: URLSearchParams,
    body: unknown,
    files: FakeFile[],
  ): { status: number; body?: unknown } {
    const interaction = this.interactions.get(id);
    if (interaction === undefined || interaction.token !== token) {
      throw new HttpError(404, 10062, 'Unknown interaction');
    }
    if (interaction.acknowledged)
      throw new HttpError(400, 40060, 'Interaction has already been acknowledged.');
    if (Date.now() - interaction.createdAt > this.#options.ackDeadlineMs) {
      throw new HttpError(404, 10062, 'Unknown interaction');
    }
    const payload = body as { type?: number; data?: Record<string, unknown> } | undefined;
    const type = payload?.type;
    const data = payload?.data ?? {};
    const flags = Number(data.flags ?? 0);
    let message: APIMessage | undefined;
    switch (type) {
      case 4:
        message = this.#createMessage(interaction.channelId, data, files, {
          token,
          interactionId: id,
          flags,
        });
        interaction.originalId = message.id;
        break;
      case 5:
        message = this.#createMessage(interaction.channelId, { content: '' }, [], {
          token,
          interactionId: id,
          flags: (flags & EPHEMERAL) | LOADING,
        });
        interaction.originalId = message.id;
        break;
      case 6:
      case 7:
        if (interaction.type !== 3) throw new HttpError(400, 40004, 'Interaction response type not allowed');
        interaction.originalId = interaction.sourceMessageId;
        if (type === 7 && interaction.sourceMessageId !== undefined) {
          message = this.#editMessage(interaction.sourceMessageId, data, files);
        }
        break;
      default:
        throw new HttpError(400, 50035, 'Invalid Form Body', { errors: { type: 'invalid' } });
    }
    interaction.acknowledged = true;
    interaction.acknowledgedAt = Date.now();
    if (query.get('with_response') === 'true') {
      return {
        status: 200,
        body: {
          interaction: {
            id,
            type: interaction.type,
            response_message_loading: type === 5,
            response_message_ephemeral: (flags & EPHEMERAL) !== 0,
          },
          resource: { type, ...(message === undefined ? {} : { message }) },
        },
      };
    }
    return { status: 204 };
  }

  #webhook(
    method: string,
    rest: string[],
    body: unknown,
    files: FakeFile[],
  ): { status: number; body?: unknown } {
    const [appId, token, sub, messageId] = rest;
    if (appId !== this.appId || token === undefined) throw new HttpError(404, 10015, 'Unknown Webhook');
    const interaction = [...this.interactions.values()].find((i) => i.token === token);
    if (interaction === undefined || !interaction.acknowledged)
      throw new HttpError(404, 10015, 'Unknown Webhook');
    if (Date.now() - interaction.createdAt > this.#options.tokenTtlMs) {
      throw new HttpError(401, 50027, 'Invalid Webhook Token');
    }
    if (sub === undefined) {
      if (method !== 'POST') throw new HttpError(405, 0, '405: Method Not Allowed');
      const data = (body ?? {}) as Record<string, unknown>;
      const message = this.#createMessage(interaction.channelId, data, files, {
        token,
        interactionId: interaction.id,
        flags: Number(data.flags ?? 0) & (EPHEMERAL | SUPPRESS_EMBEDS),
      });
      return { status: 200, body: message };
    }
    if (sub !== 'messages' || messageId === undefined) throw new HttpError(404, 0, '404: Not Found');
    const target = messageId === '@original' ? interaction.originalId : messageId;
    const stored = target === undefined ? undefined : this.messages.get(target);
    const ownsIt =
      stored !== undefined && (messageId === '@original' || this.#messageToken.get(stored.id) === token);
    if (stored === undefined || !ownsIt) throw new HttpError(404, 10008, 'Unknown Message');
    switch (method) {
      case 'GET':
        return { status: 200, body: stored };
      case 'PATCH':
        return {
          status: 200,
          body: this.#editMessage(stored.id, (body ?? {}) as Record<string, unknown>, files),
        };
      case 'DELETE':
        this.messages.delete(stored.id);
        return { status: 204 };
      default:
        throw new HttpError(405, 0, '405: Method Not Allowed');
    }
  }

  #channelMessages(
    method: string,
    channelId: string,
    messageId: string | undefined,
    body: unknown,
    files: FakeFile[],
  ): { status: number; body?: unknown } {
    if (channelId !== this.channelId) throw new HttpError(404, 10003, 'Unknown Channel');
    if (messageId === undefined) {
      if (method === 'POST') {
        const data = (body ?? {}) as Record<string, unknown>;
        return { status: 200, body: this.#createMessage(channelId, data, files, {}) };
      }
      if (method === 'GET') {
        return {
          status: 200,
          body: [...this.messages.values()].filter((m) => m.channel_id === channelId).reverse(),
        };
      }
      throw new HttpError(405, 0, '405: Method Not Allowed');
    }
    const stored = this.messages.get(messageId);
    if (stored === undefined || stored.channel_id !== channelId)
      throw new HttpError(404, 10008, 'Unknown Message');
    if (method === 'GET') return { status: 200, body: stored };
    if (method === 'PATCH') {
      // A bot may edit only what it posted itself, not interaction (webhook) messages.
      if (stored.webhook_id !== undefined) {
        throw new HttpError(403, 50005, 'Cannot edit a message authored by another user');
      }
      return {
        status: 200,
        body: this.#editMessage(messageId, (body ?? {}) as Record<string, unknown>, files),
      };
    }
    throw new HttpError(405, 0, '405: Method Not Allowed');
  }

  #createMessage(
    channelId: string,
    data: Record<string, unknown>,
    files: FakeFile[],
    origin: { token?: string; interactionId?: string; flags?: number },
  ): APIMessage {
    validateMessage(data, this.#options.maxUploadBytes, files);
    const id = snowflake();
    const fromWebhook = origin.token !== undefined;
    const message = {
      id,
      type: fromWebhook ? 20 : 0,
      channel_id: channelId,
      author: apiUser(this.botUser, true),
      content: typeof data.content === 'string' ? data.content : '',
      timestamp: new Date().toISOString(),
      edited_timestamp: null,
      tts: false,
      mention_everyone: false,
      mentions: [],
      mention_roles: [],
      attachments: this.#attachmentsFor([], data.attachments, files),
      embeds: Array.isArray(data.embeds) ? data.embeds : [],
      pinned: false,
      components: Array.isArray(data.components)
        ? (data.components as APIActionRowComponent<APIComponentInMessageActionRow>[])
        : [],
      flags: origin.flags ?? Number(data.flags ?? 0) & SUPPRESS_EMBEDS,
      ...(fromWebhook ? { webhook_id: this.appId, application_id: this.appId } : {}),
      ...(data.message_reference === undefined ? {} : { message_reference: data.message_reference }),
    } as unknown as APIMessage;
    if (origin.token !== undefined) this.#messageToken.set(id, origin.token);
    this.messages.set(id, message);
    return message;
  }

  #editMessage(id: string, data: Record<string, unknown>, files: FakeFile[]): APIMessage {
    const stored = this.messages.get(id);
    if (stored === undefined) throw new HttpError(404, 10008, 'Unknown Message');
    validateMessage(data, this.#options.maxUploadBytes, files);
    const next = {
      ...stored,
      edited_timestamp: new Date().toISOString(),
      ...(typeof data.content === 'string' ? { content: data.content } : {}),
      ...(Array.isArray(data.components) ? { components: data.components } : {}),
      ...(Array.isArray(data.embeds) ? { embeds: data.embeds } : {}),
      // An edit of the deferred "thinking" response clears the loading flag; SUPPRESS_EMBEDS may be set or cleared.
      flags:
        typeof data.flags === 'number'
          ? ((stored.flags ?? 0) & ~LOADING & ~SUPPRESS_EMBEDS) | (data.flags & SUPPRESS_EMBEDS)
          : (stored.flags ?? 0) & ~LOADING,
      attachments:
        data.attachments === undefined && files.length === 0
          ? stored.attachments
          : this.#attachmentsFor(stored.attachments, data.attachments, files),
    } as APIMessage;
    this.messages.set(id, next);
    return next;
  }

  /**
   * Discord's rule: `attachments` lists what the message keeps (existing ids) and adds (ids that
   * index `files[n]`); without it, new files are appended to the existing attachments.
   */
  #attachmentsFor(existing: readonly APIAttachment[], spec: unknown, files: FakeFile[]): APIAttachment[] {
    const byIndex = new Map<string, FakeFile>();
    files.forEach((f, i) => {
      const match = /^files\[(\d+)\]$/u.exec(f.field);
      byIndex.set(match?.[1] ?? String(i), f);
    });
    const make = (file: FakeFile, filename?: string): APIAttachment => {
      const id = snowflake();
      this.attachments.set(id, { data: file.data, contentType: file.contentType });
      const name = filename ?? file.name;
      const url = `http://127.0.0.1:${this.#port}/attachments/${id}/${encodeURIComponent(name)}`;
      return {
        id,
        filename: name,
        size: file.data.length,
        url,
        proxy_url: url,
        content_type: file.contentType,
      };
    };
    if (!Array.isArray(spec)) return [...existing, ...[...byIndex.values()].map((f) => make(f))];
    const out: APIAttachment[] = [];
    for (const entry of spec as { id: string | number; filename?: string }[]) {
      const keep = existing.find((a) => a.id === String(entry.id));
      if (keep !== undefined) {
        out.push(keep);
        continue;
      }
      const file = byIndex.get(String(entry.id));
      if (file === undefined) {
        throw new HttpError(400, 50035, 'Invalid Form Body', {
          errors: {
            attachments: { _errors: [{ code: 'ATTACHMENT_NOT_FOUND', message: `no file ${entry.id}` }] },
          },
        });
      }
      out.push(make(file, entry.filename));
    }
    return out;
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body ?? null);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** JSON or multipart/form-data (payload_json + files[n]), parsed by a real multipart parser (undici's). */
async function parseBody(
  contentType: string | undefined,
  raw: Buffer,
): Promise<{ body: unknown; files: FakeFile[] }> {
  if (raw.length === 0) return { body: undefined, files: [] };
  const type = contentType ?? '';
  if (type.startsWith('application/json')) return { body: JSON.parse(raw.toString('utf8')), files: [] };
  if (type.startsWith('multipart/form-data')) {
    const form = await new Response(new Uint8Array(raw), { headers: { 'content-type': type } }).formData();
    let body: unknown;
    const files: FakeFile[] = [];
    const entries: [string, FormDataEntryValue][] = [];
    form.forEach((value, field) => {
      entries.push([field, value]);
    });
    for (const [field, value] of entries) {
      if (field === 'payload_json' && typeof value === 'string') {
        body = JSON.parse(value);
      } else if (typeof value !== 'string') {
        files.push({
          field,
          name: value.name,
          contentType: value.type,
          data: Buffer.from(await value.arrayBuffer()),
        });
      }
    }
    return { body, files };
  }
  throw new Error(`unsupported content-type ${type}`);
}

/** Lightweight mode: JSON as usual; multipart only skimmed for part names and filenames (no bytes kept). */
function skimBody(contentType: string | undefined, raw: Buffer): { body: unknown; files: FakeFile[] } {
  const type = contentType ?? '';
  if (raw.length === 0) return { body: undefined, files: [] };
  if (!type.startsWith('multipart/form-data')) return { body: JSON.parse(raw.toString('utf8')), files: [] };
  const files: FakeFile[] = [];
  let body: unknown;
  const text = raw.toString('latin1');
  const re =
    /Content-Disposition: form-data; name="([^"]+)"(?:; filename="([^"]*)")?\r\n(?:Content-Type: ([^\r]+)\r\n)?\r\n/giu;
  for (let match = re.exec(text); match !== null; match = re.exec(text)) {
    if (match[1] === 'payload_json') {
      const start = match.index + match[0].length;
      const end = text.indexOf('\r\n--', start);
      body = JSON.parse(Buffer.from(text.slice(start, end), 'latin1').toString('utf8'));
    } else if (match[2] !== undefined) {
      files.push({ field: match[1]!, name: match[2], contentType: match[3] ?? '', data: Buffer.alloc(0) });
    }
  }
  return { body, files };
}

function invalid(path: string, message: string): HttpError {
  return new HttpError(400, 50035, 'Invalid Form Body', {
    errors: { [path]: { _errors: [{ code: 'BASE_TYPE_BAD_LENGTH', message }] } },
  });
}

function validateMessage(data: Record<string, unknown>, maxUploadBytes: number, files: FakeFile[]): void {
  if (typeof data.content === 'string' && data.content.length > 2000) {
    throw invalid('content', 'Must be 2000 or fewer in length.');
  }
  for (const file of files) {
    if (file.data.length > maxUploadBytes) throw new HttpError(413, 40005, 'Request entity too large');
  }
  const rows = data.components;
  if (rows === undefined) return;
  if (!Array.isArray(rows) || rows.length > 5) throw invalid('components', 'Must be 5 or fewer in length.');
  const seen = new Set<string>();
  for (const row of rows as {
    type?: number;
    components?: { type?: number; custom_id?: string; label?: string; style?: number }[];
  }[]) {
    if (
      row.type !== 1 ||
      !Array.isArray(row.components) ||
      row.components.length < 1 ||
      row.components.length > 5
    ) {
      throw invalid('components', 'An action row holds 1 to 5 components.');
    }
    for (const button of row.components) {
      if (button.type !== 2) throw invalid('components', 'Only buttons are expected here.');
      const id = button.custom_id ?? '';
      if (id.length < 1 || id.length > 100)
        throw invalid('components.custom_id', 'Must be between 1 and 100 in length.');
      if (seen.has(id)) throw invalid('components.custom_id', 'Component custom id cannot be duplicated');
      seen.add(id);
      if ((button.label ?? '').length > 80)
        throw invalid('components.label', 'Must be 80 or fewer in length.');
      if (button.style === undefined || button.style < 1 || button.style > 4)
        throw invalid('components.style', 'Bad style.');
    }
  }
}

function validateCommand(c: Record<string, unknown>): void {
  const name = c.name;
  if (typeof name !== 'string' || !/^[-_\p{L}\p{N}]{1,32}$/u.test(name) || name !== name.toLowerCase()) {
    throw invalid('name', 'Command name is invalid');
  }
  if (typeof c.description !== 'string' || c.description.length < 1 || c.description.length > 100) {
    throw invalid('description', 'Must be between 1 and 100 in length.');
  }
  const options = (c.options ?? []) as {
    name: string;
    description: string;
    required?: boolean;
    choices?: unknown[];
  }[];
  if (options.length > 25) throw invalid('options', 'Must be 25 or fewer in length.');
  let optionalSeen = false;
  for (const o of options) {
    if (o.required === true && optionalSeen)
      throw invalid('options', 'Required options must be placed before non-required options');
    if (o.required !== true) optionalSeen = true;
    if ((o.choices?.length ?? 0) > 25) throw invalid('options.choices', 'Must be 25 or fewer in length.');
  }
}

/** Every custom_id on a message's buttons. */
export function customIdsOf(message: APIMessage): string[] {
  return (message.components ?? []).flatMap((row) =>
    'components' in row
      ? (row.components as { custom_id?: string }[]).flatMap((b) =>
          b.custom_id === undefined ? [] : [b.custom_id],
        )
      : [],
  );
}

/** Buttons of a message as `{label, customId}`, row by row. */
export function buttonsOf(message: APIMessage): { label: string; customId: string }[][] {
  return (message.components ?? []).map((row) =>
    'components' in row
      ? (row.components as { custom_id?: string; label?: string }[]).map((b) => ({
          label: b.label ?? '',
          customId: b.custom_id ?? '',
        }))
      : [],
  );
}

export { snowflake };
