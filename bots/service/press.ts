import { type NextBatch, specFrom } from '../../core/batch.ts';
import { ErrorCode, reportError, UserError } from '../../core/errors.ts';
import { DEFAULT_MODEL_NAME, modelGoneError } from '../../core/models.ts';
import { refine, reroll } from '../../core/refine.ts';
import { servedModels } from '../../core/request.ts';
import { drawBaseSeed } from '../../core/seeds.ts';
import { maxPixelsFor } from '../../core/team-settings.ts';
import { UPSCALE_FACTOR, upscale2x, vary } from '../../core/vary.ts';
import type { GridRecord } from '../../queue/index.ts';
import type { ChatSurface, ControlPress, InteractionReply, InteractionResult } from '../surface.ts';
import { isAdmin, isGridChannel, mayCancel, mayUseGrid } from './access.ts';
import { type ServiceContext, safely } from './context.ts';
import { type DecodedControl, decodeControl, imageControls } from './controls.ts';
import { fitUpload } from './encode.ts';
import { imageText } from './format.ts';
import { modelDefaultsFor } from './model-defaults.ts';
import { nsfwNotes, nsfwOutcome, nsfwPolicyAt, showImage } from './nsfw.ts';
import { originOf } from './origin.ts';
import { MESSAGES } from './settings.ts';
import { submitAndShow } from './submit.ts';
import { accessSettings, checkPrompts, type TeamScope, teamFor } from './team.ts';

/**
 * A button press: refine, reroll, vary, upscale ×2, full-size or cancel. Returns the job it made (refine, reroll) or
 * acted on (cancel, full size). Never throws.
 */
export async function press(
  ctx: ServiceContext,
  surface: ChatSurface | undefined,
  pressed: ControlPress,
  reply: InteractionReply,
): Promise<InteractionResult> {
  const control = decodeControl(pressed.controlId);
  const context = { surface: pressed.surface, user: pressed.user, controlId: pressed.controlId };
  if (surface === undefined || control === null) {
    if (control === null) ctx.log.warn(context, 'invalid control id');
    await safely(
      ctx.log,
      () =>
        surface === undefined
          ? reply.privately('This surface is not ready.', {
              code: ErrorCode.Internal,
              message: 'surface not ready',
            })
          : reply.privately(MESSAGES.invalidControl, {
              code: ErrorCode.InvalidRequest,
              message: MESSAGES.invalidControl,
            }),
      'reply.privately',
    );
    return {};
  }
  const accepted = ctx.gate.accept(reply);
  try {
    const step = await ctx.gate.work(() => act(ctx, surface, control, pressed, reply, accepted));
    // Outside the slot: the image may first have to be made again (a wait of up to a minute or
    // two on the queue), which must not hold up other interactions' work.
    if (step.upscale !== undefined) {
      const { record, index, team } = step.upscale;
      await postImage(ctx, surface, record, index, pressed, team, reply, accepted);
    }
    return step.result;
  } catch (error) {
    await accepted;
    const shown = reportError(ctx.log, error, {
      ...context,
      action: control.action,
      recordId: control.recordId,
    });
    await safely(ctx.log, () => reply.privately(shown.message, shown), 'reply.privately');
    return {};
  }
}

/** What a press did, and (full size) the image still to post. */
interface Step {
  readonly result: InteractionResult;
  readonly upscale?: { readonly record: GridRecord; readonly index: number; readonly team: TeamScope };
}

/** Decides and does what a press asks, in one of the gate's slots. Throws what the user should be told. */
async function act(
  ctx: ServiceContext,
  surface: ChatSurface,
  control: DecodedControl,
  pressed: ControlPress,
  reply: InteractionReply,
  accepted: Promise<boolean>,
): Promise<Step> {
  // This channel's settings: its suffixes, button policy, admins, banned words and quota.
  const team = await teamFor(ctx, pressed);
  if (control.action === 'cancel') {
    const record = await ctx.jobs.record(control.recordId);
    // No record: the queue answers for a job it doesn't have (not found).
    if (record !== null && !isGridChannel(record, pressed))
      throw new UserError(ErrorCode.Forbidden, MESSAGES.otherChannel);
    if (record !== null && !mayCancel(accessSettings(ctx, team), record, pressed))
      throw new UserError(ErrorCode.Forbidden, MESSAGES.notCanceller);
    await ctx.jobs.cancel(control.recordId, { surface: pressed.surface, user: pressed.user });
    ctx.log.info(
      { jobId: control.recordId, by: pressed.user, admin: isAdmin(accessSettings(ctx, team), pressed) },
      'cancel asked',
    );
    // The cancelled delivery edits the job's message publicly; nothing more to say here.
    await accepted;
    return { result: { jobId: control.recordId } };
  }
  const record = await ctx.jobs.record(control.recordId);
  if (record === null) throw new UserError(ErrorCode.Expired, MESSAGES.expired(ctx.settings.recordTtlDays));
  if (!isGridChannel(record, pressed)) throw new UserError(ErrorCode.Forbidden, MESSAGES.otherChannel);
  if (!mayUseGrid(accessSettings(ctx, team), record, pressed))
    throw new UserError(ErrorCode.Forbidden, MESSAGES.notOwner);
  if (record.state.status.state !== 'done')
    throw new UserError(ErrorCode.InvalidRequest, MESSAGES.notFinished);
  // The grid's own model, even after the default changed; a model no longer listed can't make matching images.
  const model = record.spec.model ?? DEFAULT_MODEL_NAME;
  const served = servedModels(ctx.settings.limits);
  if (!served.includes(model)) throw modelGoneError(model, served);
  if (control.action === 'upscale')
    return { result: { jobId: record.id }, upscale: { record, index: control.index, team } };
  // Vary and Upscale ×2 start from the image's pixels: one the policy here withholds is not shown, so it
  // can't seed new pictures either (a variation could slip past the checker). Refine starts from the seed.
  if (control.action === 'vary' || control.action === 'upscale2x') {
    const policy = await nsfwPolicyAt(ctx, pressed, team);
    if (nsfwOutcome(record, policy).withheld.includes(control.index))
      throw new UserError(ErrorCode.Forbidden, MESSAGES.withheldImage(control.index + 1));
  }
  // Upscale's limit is the grid's model's: where MAX_PIXELS is unset, an image of the model's own size
  // can always be doubled; a set MAX_PIXELS caps it.
  const maxPixels =
    control.action === 'upscale2x'
      ? maxPixelsFor(ctx.settings.limits, await modelDefaultsFor(ctx, model), UPSCALE_FACTOR)
      : ctx.settings.limits.maxPixels;
  const next = nextBatch(ctx, control, record, team, maxPixels);
  // The words banned here now apply to what the grid's prompts (and the suffixes) make.
  checkPrompts(ctx, team, next.prompts);
  // The parent's revision goes along: a worker whose files for this name changed refuses rather than
  // make pictures that don't match the parent's seeds.
  const revision = record.result?.model.revision;
  const batch = revision === undefined ? next : { ...next, modelRevision: revision };
  const spec = specFrom(batch, { origin: originOf(pressed), requestedAt: ctx.now(), parentId: record.id });
  const jobId = await submitAndShow(ctx, surface, spec, reply, accepted, [], team);
  return { result: jobId === undefined ? {} : { jobId } };
}

/** The batch a press makes. A finished grid's spec is itself a batch: its prompts, seeds and settings. */
function nextBatch(
  ctx: ServiceContext,
  control: DecodedControl,
  record: GridRecord,
  team: TeamScope,
  maxPixels: number,
): NextBatch {
  switch (control.action) {
    case 'refine':
      return refine(record.spec, control.index, team.settings.suffixes);
    case 'vary':
      return vary(
        record.spec,
        record.id,
        control.index,
        control.strength ?? 'subtle',
        drawBaseSeed(ctx.random),
      );
    case 'upscale2x':
      return upscale2x(record.spec, record.id, control.index, maxPixels);
    default:
      return reroll(record.spec, drawBaseSeed(ctx.random));
  }
}

async function postImage(
  ctx: ServiceContext,
  surface: ChatSurface,
  record: GridRecord,
  index: number,
  pressed: ControlPress,
  team: TeamScope,
  reply: InteractionReply,
  accepted: Promise<boolean>,
): Promise<void> {
  const user = pressed.user;
  const prompt = record.spec.prompts[index];
  const seed = record.spec.seeds[index];
  if (prompt === undefined || seed === undefined) {
    throw new UserError(ErrorCode.InvalidRequest, `This grid has images 1 to ${record.spec.prompts.length}.`);
  }
  const png = await ctx.jobs.imagePng(record.id, index);
  if (png === null) throw new UserError(ErrorCode.Expired, MESSAGES.expired(ctx.settings.recordTtlDays));
  // The policy where the button was pressed (the image may be shown in another channel than the grid).
  const shown = await showImage(record, index, png, await nsfwPolicyAt(ctx, pressed, team));
  const fitted = await fitUpload(shown.png, `${record.id}-${index + 1}`, surface.limits.maxUploadBytes);
  const file = shown.blurred.length > 0 ? { ...fitted, spoiler: true } : fitted;
  const notes = nsfwNotes(shown);
  if (!(await accepted)) return;
  await reply.image({
    kind: 'image',
    recordId: record.id,
    index,
    seed,
    prompt,
    file,
    // The notes (what the NSFW policy did) stay whole; the caption is clipped to leave them room.
    controls: imageControls(record.id, index),
    text: [
      imageText(surface.markup, surface.limits.maxTextLength - notes.join('\n').length - 1, {
        user,
        index,
        seed,
        prompt,
      }),
      ...notes,
    ].join('\n'),
  });
}
