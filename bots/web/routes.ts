import { createHash, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCode } from '../../core/errors.ts';
import { FLAG_HELP } from '../../core/request.ts';
import { SAMPLERS } from '../../core/samplers.ts';
import { GRID_SIZE } from '../../core/seeds.ts';
import type { GridRecord } from '../../queue/index.ts';
import { uploadedImage } from '../attachments/image.ts';
import { HttpError, readJsonObject, SECURITY_HEADERS, sendJson, sendPublicError } from '../ops/http.ts';
import { encodeControl } from '../service/controls.ts';
import type { ControlAction, ImagineCommand } from '../surface.ts';
import { imagineBody } from './body.ts';
import { historyRoutes } from './history-api.ts';
import { IMAGINE_BODY_LIMIT_BYTES, UploadSlots } from './image-body.ts';
import { imageToImageRoutes, type PressedControl } from './image-routes.ts';
import {
  PLAYGROUND_CHANNEL,
  PLAYGROUND_WORKSPACE,
  type PlaygroundOptions,
  WEB_JOB_ID_RE,
} from './options.ts';
import { settingsRoutes } from './settings-api.ts';
import { HttpReply } from './surface.ts';
import { jobJson, jobUrl } from './view.ts';

/**
 * The playground's API routes: submitting and pressing (through the service), reading jobs and their
 * images, the page's info, and the event stream.
 */

export interface Ctx {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly url: URL;
  readonly user: string;
  readonly params: readonly string[];
}

export interface Route {
  readonly pattern: RegExp;
  readonly methods: Readonly<Record<string, (ctx: Ctx) => Promise<void>>>;
}

export interface PlaygroundRoutes {
  readonly routes: readonly Route[];
  /** The "no such job (or expired)" answer. */
  readonly gone: (id: string) => HttpError;
}

export function playgroundRoutes(options: PlaygroundOptions): PlaygroundRoutes {
  const log = options.log;
  const bodyLimit = options.bodyLimitBytes ?? 16_384;
  const ttlDays = options.recordTtlDays ?? 30;
  const uploads = new UploadSlots();

  const gone = (id: string) =>
    new HttpError(
      ErrorCode.NotFound,
      `No job "${id}": it never existed or has expired (grids are kept ${ttlDays} days).`,
    );

  const requireRecord = async (id: string) => {
    const record = await options.jobs.record(id);
    // Another surface's record is as invisible as one that never existed.
    if (record === null || record.spec.origin.surface !== 'web') throw gone(id);
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
      // Live status first, as for GET /api/jobs/:id: the record read after it is never behind it.
      const live = await options.jobs.status(fallbackId);
      const record = await options.jobs.record(fallbackId);
      if (record !== null) {
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
    await readEmptyBody(ctx.req, bodyLimit);
    await pressControl(ctx, { action, index });
  };

  /** A button press through the service, for the job in the path (its body already read). */
  const pressControl = async (ctx: Ctx, control: PressedControl): Promise<void> => {
    const [id] = ctx.params as [string];
    await requireRecord(id);
    const reply = new HttpReply();
    const result = await options.service.press(
      {
        surface: 'web',
        user: ctx.user,
        workspace: PLAYGROUND_WORKSPACE,
        channel: PLAYGROUND_CHANNEL,
        interactionId: interactionId(ctx.req, ctx.user),
        controlId: encodeControl({ ...control, recordId: id }),
      },
      reply,
    );
    await answer(ctx, reply, result?.jobId);
  };

  /** The PNG as the playground's NSFW policy shows it (the service decides; the stored one is untouched). */
  const shownPng = async (record: GridRecord, index: number | undefined, png: Buffer): Promise<Buffer> =>
    options.service.showResult === undefined || !hasFlagged(record)
      ? png
      : (await options.service.showResult(record, index, png, PLAYGROUND_PLACE)).png;

  const routes: Route[] = [
    {
      pattern: /^\/api\/imagine$/u,
      methods: {
        POST: async (ctx) => {
          let command: ImagineCommand;
          try {
            // Room for an image prompt on this route only (see IMAGINE_BODY_LIMIT_BYTES).
            const limitBytes = Math.max(bodyLimit, IMAGINE_BODY_LIMIT_BYTES);
            const body = await uploads.run(ctx.req, bodyLimit, async () =>
              imagineBody(await readJsonObject(ctx.req, { limitBytes })),
            );
            const base = {
              surface: 'web' as const,
              user: ctx.user,
              workspace: PLAYGROUND_WORKSPACE,
              channel: PLAYGROUND_CHANNEL,
              interactionId: interactionId(ctx.req, ctx.user),
            };
            const image = body.image && { image: uploadedImage(body.image.bytes, body.image.name) };
            command =
              'text' in body
                ? { ...base, text: body.text, ...image }
                : { ...base, options: body.options, ...image };
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
            ...(await options.info?.()),
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
          // Live status first: a job that ends between the two reads then shows as still running, never
          // as done with a record read before its result was written (no model, no result).
          const live = await options.jobs.status(id);
          const record = await requireRecord(id);
          const json = jobJson(record, live, options.surface.latestProgress(id), ctx.user);
          // The notes say what the playground's NSFW policy does to flagged images (instead of "flagged").
          const nsfw =
            json.status === 'done' && options.service.nsfwNotesFor !== undefined && hasFlagged(record)
              ? await options.service.nsfwNotesFor(record, PLAYGROUND_PLACE)
              : [];
          sendJson(
            ctx.res,
            200,
            nsfw.length === 0
              ? json
              : { ...json, notes: [...nsfw, ...json.notes.filter((n) => !isFlaggedNote(n))] },
          );
        },
      },
    },
    {
      pattern: /^\/api\/jobs\/([^/]+)\/grid(?:\.png)?$/u,
      methods: {
        GET: async (ctx) => {
          const [id] = ctx.params as [string];
          const record = await requireRecord(id);
          if (record.state.status.state !== 'done') throw notReady(record.state.status.state);
          const png = await options.jobs.gridPng(id);
          if (png === null) throw gone(id);
          sendPng(ctx.res, await shownPng(record, undefined, png), `${id}-grid.png`);
        },
      },
    },
    {
      pattern: /^\/api\/jobs\/([^/]+)\/images\/(\d+)(?:\.png)?$/u,
      methods: {
        GET: async (ctx) => {
          const [id, nText] = ctx.params as [string, string];
          const record = await requireRecord(id);
          const n = imageNumber(nText, record.spec.prompts.length);
          if (record.state.status.state !== 'done') throw notReady(record.state.status.state);
          const png = await options.jobs.imagePng(id, n - 1);
          if (png === null) throw gone(id);
          sendPng(ctx.res, await shownPng(record, n - 1, png), `${id}-${n}.png`);
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
    ...imageToImageRoutes({ pressControl, imageNumber, bodyLimit, readEmptyBody }),
  ];

  if (options.teamSettings !== undefined) routes.push(...settingsRoutes(options.teamSettings, bodyLimit));
  routes.push(...historyRoutes(options));
  return { routes, gone };
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

/** Where the playground shows results, for the NSFW policy: its one team, a local place. */
const PLAYGROUND_PLACE = {
  surface: 'web',
  workspace: PLAYGROUND_WORKSPACE,
  channel: PLAYGROUND_CHANNEL,
} as const;

function hasFlagged(record: GridRecord): boolean {
  return record.result?.nsfw?.some((f) => f) === true;
}

/** format.ts's plain "flagged" note, replaced by what the policy did. */
function isFlaggedNote(note: string): boolean {
  return note.startsWith('The safety checker flagged');
}
