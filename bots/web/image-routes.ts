import type { IncomingMessage } from 'node:http';
import { ErrorCode } from '../../core/errors.ts';
import { VARY_STRENGTH_NAMES, type VaryStrength } from '../../core/vary.ts';
import { HttpError, readJsonObject } from '../ops/http.ts';
import type { ControlAction } from '../surface.ts';

/**
 * The playground's image-to-image routes, the same presses as the chat buttons:
 * `POST /api/jobs/:id/vary/:n` with `{"strength": "subtle"|"strong"}` and `POST /api/jobs/:id/upscale2x/:n`
 * (no body). Both answer 202 with the new job (`id`, `seeds`, …), like refine.
 */

/** A press without its record id (the route's `:id`). */
export interface PressedControl {
  readonly action: ControlAction;
  readonly index: number;
  readonly strength?: VaryStrength;
}

interface RouteContext {
  readonly req: IncomingMessage;
  readonly params: readonly string[];
}

export interface ImageToImageDeps<C extends RouteContext> {
  pressControl(ctx: C, control: PressedControl): Promise<void>;
  /** The 1-based image number of the path, checked (400 naming it otherwise). */
  imageNumber(text: string): number;
  readEmptyBody(req: IncomingMessage, limit: number): Promise<void>;
  readonly bodyLimit: number;
}

export function imageToImageRoutes<C extends RouteContext>(deps: ImageToImageDeps<C>) {
  return [
    {
      pattern: /^\/api\/jobs\/([^/]+)\/vary\/(\d+)$/u,
      methods: {
        POST: async (ctx: C) => {
          const index = deps.imageNumber(ctx.params[1]!) - 1;
          const strength = await readStrength(ctx.req, deps.bodyLimit);
          await deps.pressControl(ctx, { action: 'vary', index, strength });
        },
      },
    },
    {
      pattern: /^\/api\/jobs\/([^/]+)\/upscale2x\/(\d+)$/u,
      methods: {
        POST: async (ctx: C) => {
          const index = deps.imageNumber(ctx.params[1]!) - 1;
          await deps.readEmptyBody(ctx.req, deps.bodyLimit);
          await deps.pressControl(ctx, { action: 'upscale2x', index });
        },
      },
    },
  ];
}

/** `{"strength": "subtle"|"strong"}`, nothing else; a 400 naming the field otherwise. */
async function readStrength(req: IncomingMessage, limit: number): Promise<VaryStrength> {
  const body = await readJsonObject(req, { limitBytes: limit });
  const extra = Object.keys(body).filter((k) => k !== 'strength');
  if (extra.length > 0) {
    throw new HttpError(
      ErrorCode.InvalidRequest,
      `Vary takes only "strength" in its body (got ${extra.join(', ')}).`,
    );
  }
  const strength = body.strength;
  const allowed = VARY_STRENGTH_NAMES.map((n) => `"${n}"`).join(' or ');
  if (typeof strength !== 'string' || !(VARY_STRENGTH_NAMES as readonly string[]).includes(strength)) {
    throw new HttpError(
      ErrorCode.InvalidRequest,
      strength === undefined
        ? `strength is required: ${allowed}.`
        : `strength must be ${allowed}, got ${JSON.stringify(strength).slice(0, 60)}.`,
    );
  }
  return strength as VaryStrength;
}
