import { ErrorCode, reportError } from '../../core/errors.ts';
import type { JobSpecInput } from '../../core/jobspec.ts';
import { mergeMessageRef, PermanentDeliveryError, type SubmitResult } from '../../queue/index.ts';
import type { QuotaCharge } from '../settings/quota.ts';
import type { ChatSurface, InteractionReply, JobTarget, MessageRef } from '../surface.ts';
import { interactionKey, type ServiceContext, safely } from './context.ts';
import { displayPrompt } from './format.ts';
import { rememberGrid } from './history.ts';
import { MESSAGES } from './settings.ts';
import { chargeQuota, type TeamScope } from './team.ts';
import { queuedView } from './views.ts';

async function refund(ctx: ServiceContext, charge: QuotaCharge | undefined): Promise<void> {
  await charge?.refund().catch((error: unknown) => ctx.log.warn({ err: error }, 'refunding a quota failed'));
}

/**
 * Submits a job spec and shows it as queued (or why it could not be). Returns the id of the job the
 * queue made, or the existing one for a redelivered interaction; undefined when nothing was queued.
 *
 * The job id is the queue's to make (`Jobs.submit` returns it). A delivery or progress event for
 * the job can race this call (a fast worker finishes before `submit` has answered), so the whole
 * submission runs on a chain keyed by the interaction, and those events first wait for that chain,
 * found through their record's origin (see deliver.ts): the queued message always goes first,
 * without a second derivation of the id here.
 */
export function submitAndShow(
  ctx: ServiceContext,
  surface: ChatSurface,
  spec: JobSpecInput,
  reply: InteractionReply,
  accepted: Promise<boolean>,
  warnings: readonly string[],
  team?: TeamScope,
): Promise<string | undefined> {
  return ctx.chains.run(interactionKey(spec.origin), () =>
    submitNow(ctx, surface, spec, reply, accepted, warnings, team),
  );
}

async function submitNow(
  ctx: ServiceContext,
  surface: ChatSurface,
  spec: JobSpecInput,
  reply: InteractionReply,
  accepted: Promise<boolean>,
  warnings: readonly string[],
  team: TeamScope | undefined,
): Promise<string | undefined> {
  const origin = spec.origin;
  let result: SubmitResult;
  let charge: QuotaCharge | undefined;
  try {
    // Counted before submitting, so two requests at once can't both take the last of a quota.
    charge = await chargeQuota(ctx, team, origin.user, spec.prompts.length);
    result = await ctx.jobs.submit(spec);
  } catch (error) {
    await refund(ctx, charge);
    await accepted;
    const shown = reportError(ctx.log, error, {
      surface: origin.surface,
      user: origin.user,
      action: spec.kind,
    });
    await safely(ctx.log, () => reply.privately(shown.message, shown), 'reply.privately');
    return undefined;
  }
  const ok = await accepted;
  const id = result.jobId;
  if (result.duplicate) {
    // The first delivery of this interaction already counted its images.
    await refund(ctx, charge);
    ctx.log.info({ jobId: id, interactionId: origin.interactionId }, 'duplicate interaction: nothing queued');
    return id;
  }
  await rememberGrid(ctx, origin, id);
  const prompt = displayPrompt(spec.prompts);
  const target: JobTarget = {
    recordId: id,
    channel: origin.channel,
    ...(origin.thread === undefined ? {} : { thread: origin.thread }),
    messageRef: { ...origin.messageRef },
    requestedAt: spec.requestedAt,
    owner: origin.user,
  };
  ctx.known.set(id, { target, prompt });
  if (!ok || ctx.known.isFinished(id)) return id;
  const view = queuedView(surface, {
    result,
    user: origin.user,
    prompt,
    jobKind: spec.kind,
    parentIndex: spec.parent?.index,
    warnings,
  });
  let patch: MessageRef | undefined;
  try {
    patch = await reply.queued(view);
  } catch (error) {
    ctx.log.warn({ err: error, jobId: id }, 'showing the queued message failed');
    if (error instanceof PermanentDeliveryError) await undeliverable(ctx, id, origin, reply);
    return id;
  }
  if (patch !== undefined && Object.keys(patch).length > 0) {
    ctx.known.set(id, {
      target: { ...target, messageRef: mergeMessageRef(target.messageRef, patch) },
      prompt,
    });
    await ctx.jobs.updateMessageRef(id, patch).catch((error: unknown) => {
      ctx.log.warn({ err: error, jobId: id }, 'storing the message reference failed');
    });
  }
  return id;
}

/**
 * The bot can't post here (a private channel it isn't in, a DM between two people, lost access): the
 * result could never be delivered, so don't spend a GPU on it, and say why. The service cancels on
 * its own behalf, as the requester (it decides who may cancel; the queue just cancels).
 */
async function undeliverable(
  ctx: ServiceContext,
  id: string,
  origin: JobSpecInput['origin'],
  reply: InteractionReply,
): Promise<void> {
  await ctx.jobs
    .cancel(id, { surface: origin.surface, user: origin.user })
    .catch((e: unknown) => ctx.log.warn({ err: e, jobId: id }, 'cancelling the undeliverable job failed'));
  await safely(
    ctx.log,
    () => reply.privately(MESSAGES.cannotPost, { code: ErrorCode.Forbidden, message: MESSAGES.cannotPost }),
    'reply.privately',
  );
}
