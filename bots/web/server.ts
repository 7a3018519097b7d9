import { createHash, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isLoopbackHost } from '../../core/config.ts';
import { ErrorCode } from '../../core/errors.ts';
import { FLAG_HELP } from '../../core/request.ts';
import { SAMPLERS } from '../../core/samplers.ts';
import { GRID_SIZE } from '../../core/seeds.ts';
import type { Jobs } from '../../queue/index.ts';
import type { Logger } from '../logger.ts';
import { safeUrl } from '../logger.ts';
import type { Health } from '../ops/health.ts';
import {
  HttpError,
  handleOps,
  methodNotAllowed,
  notFound,
  readJsonObject,
  SECURITY_HEADERS,
  sendError,
  sendJson,
  sendPublicError,
  sendText,
} from '../ops/http.ts';
import type { Metrics } from '../ops/metrics.ts';
import { listen, type RunningServer } from '../ops/server.ts';
import { encodeControl } from '../service/controls.ts';
import type { ControlAction, ControlPress, ImagineCommand, InteractionResult } from '../surface.ts';
import { Access, checkOrigin, Identities, type IdentityIssueLimit, isSecure } from './auth.ts';
import { imagineBody } from './body.ts';
import { HttpReply, type WebSurface } from './surface.ts';
import { jobJson, jobUrl } from './view.ts';

/** The part of the conversation service the playground drives (ConversationService satisfies it). */
export interface PlaygroundService {
  /** Answers with the id of the job made (the queue's, never predicted here), when one was. */
  imagine(command: ImagineCommand, reply: HttpReply): Promise<InteractionResult | undefined>;
  /** Answers with the id of the job made (refine, reroll) or acted on (cancel, full size). */
  press(press: ControlPress, reply: HttpReply): Promise<InteractionResult | undefined>;
}

export interface PlaygroundOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** Required unless `host` is loopback. */
  readonly token?: string | undefined;
  readonly service: PlaygroundService;
  /** Reads only: records, status, PNGs. Every action goes through the service. */
  readonly jobs: Pick<Jobs, 'record' | 'status' | 'gridPng' | 'imagePng'>;
  /** The surface attached to the service. */
  readonly surface: WebSurface;
  readonly health: Health;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Shown by the page (`GET /api/info`): model label, defaults… Read per request. */
  readonly info?: () => Readonly<Record<string, unknown>>;
  /** Shown in "not found" answers. */
  readonly recordTtlDays?: number;
  /** @defaultValue 16384 */
  readonly bodyLimitBytes?: number;
  /**
   * Signs the identity cookies; must be the same across restarts and bot processes (the app passes
   * `redisIdentitySecret`). @defaultValue a random secret per process
   */
  readonly identitySecret?: () => Promise<Buffer>;
  /** New identities per client address. @defaultValue IDENTITY_ISSUE_DEFAULTS */
  readonly identityLimit?: Partial<IdentityIssueLimit>;
}

/** Playground job ids: only jobs made on the web are visible here (Discord and Slack jobs are not). */
export const WEB_JOB_ID_RE = /^web-[A-Za-z0-9_-]{1,64}$/u;
/** Any surface's job id shape, to tell "not a job id" from "not a job you can see". */
const ANY_JOB_ID_RE = /^[a-z]+-[A-Za-z0-9_-]{1,64}$/u;

/** The channel every playground job is posted in (the page is one shared room). */
export const PLAYGROUND_CHANNEL = 'playground';

const STATIC_FILES = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
  '/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
} as const satisfies Record<string, { file: string; type: string }>;

type StaticPath = keyof typeof STATIC_FILES;

const CSP =
  "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

interface Ctx {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly url: URL;
  readonly user: string;
  readonly params: readonly string[];
}

interface Route {
  readonly pattern: RegExp;
  readonly methods: Readonly<Record<string, (ctx: Ctx) => Promise<void>>>;
}

export async function startPlayground(options: PlaygroundOptions): Promise<RunningServer> {
  const openLoopback = options.token === undefined;
  if (openLoopback && !isLoopbackHost(options.host)) {
    throw new Error(`PLAYGROUND_TOKEN is required when HOST (${options.host}) is not a loopback address`);
  }
  const access = new Access(options.token);
  const identities = new Identities({
    ...(options.identitySecret === undefined ? {} : { secret: options.identitySecret }),
    ...(options.identityLimit === undefined ? {} : { limit: options.identityLimit }),
  });
  const staticDir = new URL('./static/', import.meta.url);
  const files = new Map<string, Buffer>();
  for (const { file } of Object.values(STATIC_FILES)) {
    if (!files.has(file)) files.set(file, await readFile(new URL(file, staticDir)));
  }
  const log = options.log;
  const bodyLimit = options.bodyLimitBytes ?? 16_384;
  const ttlDays = options.recordTtlDays ?? 30;

  const gone = (id: string) =>
    new HttpError(
      ErrorCode.NotFound,
      `No job "${id}": it never existed or has expired (grids are kept ${ttlDays} days).`,
    );

  const requireRecord = async (id: string) => {
    const record = await options.jobs.record(id);
    // Another surface's record is as invisible as one that never existed.
    if (record === null || record.owner.surface !== 'web') throw gone(id);
    return record;
  };

  const imageNumber = (text: string, count: number = GRID_SIZE): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1 || n > count) {
      throw new HttpError(ErrorCode.InvalidRequest, `Image numbers go from 1 to ${count}, got ${text}.`);
    }
    return n;
  };

  /** A retried request with the same Idempotency-Key (per user) maps to the same job. */
  const interactionId = (req: IncomingMessage, user: string): string => {
    const key = req.headers['idempotency-key'];
    if (key === undefined) return randomUUID();
    if (typeof key !== 'string' || !/^[A-Za-z0-9_-]{8,64}$/u.test(key)) {
      throw new HttpError(
        ErrorCode.InvalidRequest,
        'Idempotency-Key must be 8 to 64 letters, digits, _ or -.',
      );
    }
    // Hashed, so the job id (which others may see) never carries the user's id.
    return `k-${createHash('sha256').update(`${user}.${key}`).digest('hex').slice(0, 40)}`;
  };

  /** Turns what the service told the request into the HTTP answer. */
  const answer = async (ctx: Ctx, reply: HttpReply, fallbackId: string | undefined): Promise<void> => {
    const outcome = reply.outcome;
    if (outcome?.kind === 'queued') {
      const view = outcome.view;
      options.surface.announceQueued(ctx.user, view.recordId);
      log.info({ jobId: view.recordId, kind: view.jobKind, user: ctx.user }, 'playground job queued');
      sendJson(
        ctx.res,
        202,
        {
          id: view.recordId,
          kind: view.jobKind,
          seeds: view.seeds,
          position: view.position,
          warnings: view.warnings,
          url: jobUrl(view.recordId),
        },
        { location: jobUrl(view.recordId) },
      );
      return;
    }
    if (outcome?.kind === 'private') {
      // A private answer without an error is the service refusing what was typed.
      sendPublicError(ctx.res, {
        ...(outcome.error ?? { code: ErrorCode.InvalidRequest }),
        message: outcome.text,
      });
      return;
    }
    if (outcome?.kind === 'image') {
      const view = outcome.view;
      sendJson(ctx.res, 200, {
        id: view.recordId,
        n: view.index + 1,
        seed: view.seed,
        prompt: view.prompt,
        image: `${jobUrl(view.recordId)}/images/${view.index + 1}.png`,
      });
      return;
    }
    // No visible answer: a redelivered request (same Idempotency-Key) or a cancel. Answer with the job.
    if (fallbackId !== undefined) {
      const record = await options.jobs.record(fallbackId);
      if (record !== null) {
        const live = await options.jobs.status(fallbackId);
        const job = jobJson(record, live, options.surface.latestProgress(fallbackId), ctx.user);
        sendJson(ctx.res, 200, {
          id: job.id,
          kind: job.kind,
          status: job.status,
          seeds: job.seeds,
          position: job.position,
          url: jobUrl(job.id),
        });
        return;
      }
    }
    throw new HttpError(
      ErrorCode.Unavailable,
      'The playground could not handle this request right now; try again.',
    );
  };

  const press = async (ctx: Ctx, action: ControlAction, index: number): Promise<void> => {
    const [id] = ctx.params as [string];
    await readEmptyBody(ctx.req, bodyLimit);
    await requireRecord(id);
    const reply = new HttpReply();
    const result = await options.service.press(
      {
        surface: 'web',
        user: ctx.user,
        channel: PLAYGROUND_CHANNEL,
        interactionId: interactionId(ctx.req, ctx.user),
        controlId: encodeControl({ action, recordId: id, index }),
      },
      reply,
    );
    await answer(ctx, reply, result?.jobId);
  };

  const routes: Route[] = [
    {
      pattern: /^\/api\/imagine$/u,
      methods: {
        POST: async (ctx) => {
          let command: ImagineCommand;
          try {
            const body = imagineBody(await readJsonObject(ctx.req, { limitBytes: bodyLimit }));
            const base = {
              surface: 'web' as const,
              user: ctx.user,
              channel: PLAYGROUND_CHANNEL,
              interactionId: interactionId(ctx.req, ctx.user),
            };
            command = 'text' in body ? { ...base, text: body.text } : { ...base, options: body.options };
          } catch (error) {
            // Refused before the service saw it: still a rejected submission (the service counts the rest).
            if (error instanceof HttpError && error.status < 500) options.metrics.submit('invalid');
            throw error;
          }
          const reply = new HttpReply();
          const result = await options.service.imagine(command, reply);
          await answer(ctx, reply, result?.jobId);
        },
      },
    },
    {
      pattern: /^\/api\/info$/u,
      methods: {
        GET: async (ctx) =>
          sendJson(ctx.res, 200, {
            samplers: SAMPLERS,
            flags: FLAG_HELP,
            gridSize: GRID_SIZE,
            ...options.info?.(),
          }),
      },
    },
    {
      pattern: /^\/api\/events$/u,
      methods: {
        GET: async (ctx) => {
          if (ctx.req.method === 'HEAD') {
            ctx.res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' }).end();
            return;
          }
          const wanted = ctx.url.searchParams
            .getAll('job')
            .flatMap((v) => v.split(','))
            .filter((v) => WEB_JOB_ID_RE.test(v))
            .slice(0, 200);
          const max = options.surface.maxStreamsPerUser;
          if (options.surface.openStreams(ctx.user) >= max) {
            throw new HttpError(
              ErrorCode.RateLimited,
              `Too many open event streams: at most ${max} per browser. Close another playground tab and try again.`,
            );
          }
          options.surface.stream(ctx.res, ctx.user, new Set(wanted));
        },
      },
    },
    {
      pattern: /^\/api\/jobs\/([^/]+)$/u,
      methods: {
        GET: async (ctx) => {
          const [id] = ctx.params as [string];
          const record = await requireRecord(id);
          const live = await options.jobs.status(id);
          sendJson(ctx.res, 200, jobJson(record, live, options.surface.latestProgress(id), ctx.user));
        },
      },
    },
    {
      pattern: /^\/api\/jobs\/([^/]+)\/grid(?:\.png)?$/u,
      methods: {
        GET: async (ctx) => {
          const [id] = ctx.params as [string];
          const record = await requireRecord(id);
          if (record.status.state !== 'done') throw notReady(record.status.state);
          const png = await options.jobs.gridPng(id);
          if (png === null) throw gone(id);
          sendPng(ctx.res, png, `${id}-grid.png`);
        },
      },
    },
    {
      pattern: /^\/api\/jobs\/([^/]+)\/images\/(\d+)(?:\.png)?$/u,
      methods: {
        GET: async (ctx) => {
          const [id, nText] = ctx.params as [string, string];
          const record = await requireRecord(id);
          const n = imageNumber(nText, record.prompts.length);
          if (record.status.state !== 'done') throw notReady(record.status.state);
          const png = await options.jobs.imagePng(id, n - 1);
          if (png === null) throw gone(id);
          sendPng(ctx.res, png, `${id}-${n}.png`);
        },
      },
    },
    {
      pattern: /^\/api\/jobs\/([^/]+)\/preview(?:\.png)?$/u,
      methods: {
        GET: async (ctx) => {
          const [id] = ctx.params as [string];
          const png = options.surface.preview(id);
          if (png === undefined) throw new HttpError(ErrorCode.NotFound, `No preview for "${id}" right now.`);
          sendPng(ctx.res, png, `${id}-preview.png`);
        },
      },
    },
    {
      pattern: /^\/api\/jobs\/([^/]+)\/refine\/(\d+)$/u,
      methods: { POST: (ctx) => press(ctx, 'refine', imageNumber(ctx.params[1]!) - 1) },
    },
    {
      pattern: /^\/api\/jobs\/([^/]+)\/upscale\/(\d+)$/u,
      methods: { POST: (ctx) => press(ctx, 'upscale', imageNumber(ctx.params[1]!) - 1) },
    },
    { pattern: /^\/api\/jobs\/([^/]+)\/reroll$/u, methods: { POST: (ctx) => press(ctx, 'reroll', 0) } },
    { pattern: /^\/api\/jobs\/([^/]+)\/cancel$/u, methods: { POST: (ctx) => press(ctx, 'cancel', 0) } },
  ];

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://playground.invalid');
    } catch {
      throw new HttpError(ErrorCode.InvalidRequest, 'Malformed request URL.');
    }
    const path = url.pathname;
    // Probes stay open: container healthchecks and load balancers carry no token.
    if (path === '/healthz' || path === '/readyz') {
      await handleOps(req, res, path, options);
      return;
    }
    const refused = checkOrigin(req, openLoopback);
    if (refused !== undefined) throw new HttpError(ErrorCode.Forbidden, refused);

    // The login link: check the token, set the session cookie, and drop the token from the address bar.
    const loginToken = url.searchParams.get('token');
    if (path === '/' && loginToken !== null && access.required) {
      const session = access.login(loginToken, isSecure(req));
      if (session === undefined) {
        sendText(res, 401, 'text/plain; charset=utf-8', 'Wrong playground token.\n');
        return;
      }
      res.writeHead(303, {
        ...SECURITY_HEADERS,
        location: '/',
        'set-cookie': session,
        'cache-control': 'no-store',
      });
      res.end();
      return;
    }
    if (!access.allows(req)) {
      if (path === '/' || path === '/index.html') {
        // A person at the page, not an API client: say how to get in.
        sendText(
          res,
          401,
          'text/plain; charset=utf-8',
          'This playground needs its token. Open the login link once: /?token=<PLAYGROUND_TOKEN>\n',
        );
        return;
      }
      throw new HttpError(
        ErrorCode.Unauthorized,
        'This playground needs its token: open /?token=<PLAYGROUND_TOKEN> once, or send Authorization: Bearer <token>.',
        { 'www-authenticate': 'Bearer realm="imagine playground"' },
      );
    }
    if (path === '/metrics') {
      await handleOps(req, res, path, options);
      return;
    }

    // Assets need no identity; the page and the API do (the page's first load issues the cookie).
    const asset = path in STATIC_FILES && path !== '/' && path !== '/index.html';
    const identity = asset ? undefined : await identities.identify(req);
    if (identity?.setCookie !== undefined) res.setHeader('set-cookie', identity.setCookie);

    if (path in STATIC_FILES) {
      if (req.method !== 'GET' && req.method !== 'HEAD') throw methodNotAllowed(['GET', 'HEAD']);
      const entry = STATIC_FILES[path as StaticPath];
      const body = files.get(entry.file)!;
      res.writeHead(200, {
        ...SECURITY_HEADERS,
        'content-type': entry.type,
        'content-length': String(body.length),
        'cache-control': 'no-cache',
        'content-security-policy': CSP,
      });
      res.end(body);
      return;
    }

    for (const route of routes) {
      const match = route.pattern.exec(path);
      if (match === null) continue;
      const params = match.slice(1).map((p) => safeDecode(p));
      if (path.startsWith('/api/jobs/') && !WEB_JOB_ID_RE.test(params[0] ?? '')) {
        const id = params[0] ?? '';
        if (ANY_JOB_ID_RE.test(id)) throw gone(id);
        throw new HttpError(ErrorCode.NotFound, `No job "${id}": job ids look like web-abc123.`);
      }
      const method = req.method === 'HEAD' && route.methods.GET !== undefined ? 'GET' : (req.method ?? 'GET');
      const run = route.methods[method];
      if (run === undefined) {
        const allowed = Object.keys(route.methods);
        if (allowed.includes('GET')) allowed.push('HEAD');
        throw methodNotAllowed(allowed);
      }
      await run({ req, res, url, user: identity?.user ?? '', params });
      return;
    }
    throw notFound(`Nothing at ${path}.`);
  };

  const server = createServer((req, res) => {
    const started = performance.now();
    res.on('finish', () =>
      log.debug(
        {
          method: req.method,
          url: safeUrl(req.url ?? '/'),
          status: res.statusCode,
          ms: Math.round(performance.now() - started),
        },
        'http request',
      ),
    );
    handle(req, res).catch((error: unknown) =>
      sendError(res, error, log, { path: safeUrl(req.url ?? '/'), method: req.method }),
    );
  });
  // A client that never finishes sending headers or a body must not hold a socket forever.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.maxHeadersCount = 100;
  const running = await listen(server, options.host, options.port);
  return {
    ...running,
    close: async () => {
      options.surface.close();
      await running.close();
    },
  };
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function sendPng(res: ServerResponse, png: Buffer, name: string): void {
  res.writeHead(200, {
    ...SECURITY_HEADERS,
    'content-type': 'image/png',
    'content-length': String(png.length),
    // Results never change once written; they only expire.
    'cache-control': 'private, max-age=86400, immutable',
    'content-disposition': `inline; filename="${name}"`,
  });
  res.end(png);
}

function notReady(state: string): HttpError {
  return new HttpError(ErrorCode.NotReady, `This job is ${state}; its images exist once it is done.`);
}

/** Buttons take no body; anything but nothing or `{}` is a mistake worth reporting. */
async function readEmptyBody(req: IncomingMessage, limit: number): Promise<void> {
  const body = await readJsonObject(req, { limitBytes: limit });
  const keys = Object.keys(body);
  if (keys.length > 0) {
    throw new HttpError(
      ErrorCode.InvalidRequest,
      `This action takes no body fields (got ${keys.join(', ')}).`,
    );
  }
}
