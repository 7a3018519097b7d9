import { imagineBatch, specFrom } from '../../core/batch.ts';
import type { RequestLimits } from '../../core/config.ts';
import { ErrorCode, InternalError, reportError, UserError } from '../../core/errors.ts';
import {
  type ImagineRequest,
  parseImagineOptions,
  parseImagineText,
  type Result,
  servedModels,
} from '../../core/request.ts';
import { drawBaseSeed, gridSeeds } from '../../core/seeds.ts';
import { limitsWith } from '../../core/team-settings.ts';
import type { ImageInput } from '../attachments/image.ts';
import type { ChatSurface, ImagineCommand, InteractionReply, InteractionResult } from '../surface.ts';
import { type ServiceContext, safely } from './context.ts';
import { warningsFor } from './format.ts';
import { imageOf, imagePromptSize, type LoadedPrompt, loadImagePrompt, strengthOf } from './image-prompt.ts';
import { MODEL_SERVED_WAIT_MS, modelDefaultsFor, within } from './model-defaults.ts';
import { originOf } from './origin.ts';
import { MESSAGES } from './settings.ts';
import { submitAndShow } from './submit.ts';
import { checkPrompts, type TeamScope, teamFor } from './team.ts';

/** A parsed request whose prompt holds a word banned here becomes that refusal. */
function banned(
  ctx: ServiceContext,
  team: TeamScope,
  parsed: Result<ImagineRequest>,
): Result<ImagineRequest> {
  if (!parsed.ok) return parsed;
  try {
    checkPrompts(ctx, team, [parsed.value.prompt]);
    return parsed;
  } catch (error) {
    return { ok: false, error: error as UserError };
  }
}

/**
 * `loadImagePrompt`, with a refusal answered privately (after the acknowledgement): null then, and
 * nothing is queued.
 */
async function loadOrRefuse(
  ctx: ServiceContext,
  command: ImagineCommand,
  image: ImageInput,
  reply: InteractionReply,
  accepted: Promise<boolean>,
): Promise<LoadedPrompt | null> {
  try {
    return await loadImagePrompt(image);
  } catch (error) {
    if (error instanceof UserError) ctx.metrics?.submit('invalid');
    await accepted;
    const shown = reportError(ctx.log, error, {
      surface: command.surface,
      user: command.user,
      action: 'imagine',
    });
    await safely(ctx.log, () => reply.privately(shown.message, shown), 'reply.privately');
    return null;
  }
}

/**
 * `/imagine`. Parses (pure), then calls `reply.privately` (bad input: nothing queued) or
 * `reply.accept` before any I/O, submits, and shows seeds and queue position with `reply.queued`.
 * Never throws.
 */
export async function imagine(
  ctx: ServiceContext,
  surface: ChatSurface | undefined,
  command: ImagineCommand,
  reply: InteractionReply,
): Promise<InteractionResult> {
  // Resolved before the acknowledgement: a cache hit (the usual case) costs nothing, a miss one read.
  const team = await teamFor(ctx, command);
  const parse = (limits: RequestLimits) =>
    command.text !== undefined
      ? parseImagineText(command.text, limits)
      : parseImagineOptions(command.options, limits);
  // Parsed twice: first to learn the model (with room for any model's size, so it fails only where
  // the second would too), then with that model's defaults and limits under the team's settings.
  const sources = { team: team.defaults ?? {} };
  const base = limitsWith(ctx.settings.limits, team.settings, sources);
  const asked = parse({ ...base, maxPixels: Number.MAX_SAFE_INTEGER });
  // The spec always names its model, so the grid's buttons keep it after the default changes: the one
  // asked for, else the team's (when this deployment serves it), else the deployment's default.
  const teamModel = team.settings.model;
  const teamServed = teamModel !== undefined && servedModels(base).includes(teamModel);
  const model =
    (asked.ok ? asked.value.model : undefined) ?? (teamServed ? teamModel : servedModels(base)[0]!);
  const limits = asked.ok
    ? limitsWith(ctx.settings.limits, team.settings, {
        ...sources,
        model: await modelDefaultsFor(ctx, model),
      })
    : base;
  const parsed = banned(ctx, team, asked.ok ? parse(limits) : asked);
  const image = parsed.ok ? imageOf(command, parsed.value) : parsed;
  if (surface === undefined || !parsed.ok || !image.ok) {
    // Bad input never reaches the queue (which counts only what it refuses itself), so count it here.
    if (!image.ok) ctx.metrics?.submit('invalid');
    const error = image.ok
      ? new InternalError(ErrorCode.Internal, `surface ${command.surface} not attached`)
      : image.error;
    const shown = reportError(ctx.log, error, {
      surface: command.surface,
      user: command.user,
      action: 'imagine',
    });
    await safely(ctx.log, () => reply.privately(shown.message, shown), 'reply.privately');
    return {};
  }
  const accepted = ctx.gate.accept(reply);
  const request = parsed.value;
  const seeds = gridSeeds(request.seed ?? drawBaseSeed(ctx.random));
  const batch = { ...imagineBatch(request, seeds), model };
  const requestedAt = ctx.now();
  const jobId = await ctx.gate.work(async () => {
    // An image prompt's picture is fetched and checked after the acknowledgement, before queueing.
    const prompt = image.value && (await loadOrRefuse(ctx, command, image.value, reply, accepted));
    if (prompt === null) return undefined;
    const spec = specFrom(
      prompt === undefined
        ? batch
        : {
            ...batch,
            ...imagePromptSize(command, request, prompt.init, limits),
            init: prompt.init,
            strength: strengthOf(request),
          },
      { origin: originOf(command), requestedAt },
    );
    const warnings = warningsFor(request, limits);
    if (request.model === undefined && teamModel !== undefined && !teamServed) {
      warnings.push(MESSAGES.teamModelUnserved(teamModel, model));
    }
    // Queued all the same (a worker may be restarting or starting up), but the user is told. Only a
    // hint: a slow or unreachable Redis gets no more than a short wait (the submit reports an outage).
    const asking = ctx.jobs.modelServed?.(batch.model).catch(() => true);
    const served = asking && (await within(asking, MODEL_SERVED_WAIT_MS));
    if (served === false) warnings.push(MESSAGES.modelUnserved(batch.model));
    const upload = prompt === undefined ? {} : { initImage: prompt.bytes };
    return submitAndShow(ctx, surface, spec, reply, accepted, warnings, team, upload);
  });
  return jobId === undefined ? {} : { jobId };
}
