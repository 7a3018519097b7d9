import { settingsOf } from '../../core/batch.ts';
import { somethingWentWrong } from '../../core/errors.ts';
import type { JobKind } from '../../core/jobspec.ts';
import type { DeliveryEvent, GridRecord, ProgressEvent, SubmitResult } from '../../queue/index.ts';
import type {
  CancelledView,
  ChatSurface,
  FailureView,
  GridImageInfo,
  GridView,
  ProgressView,
  QueuedView,
} from '../surface.ts';
import { cancelControls, gridControls } from './controls.ts';
import { fitUpload } from './encode.ts';
import {
  cancelledText,
  displayPrompt,
  displayUser,
  failureText,
  gridNotes,
  gridText,
  progressText,
  queuedText,
} from './format.ts';
import { nsfwNotes, type Shown } from './nsfw.ts';

/** The views the service hands a surface: data plus the text composed in the surface's markup. */

export function queuedView(
  surface: ChatSurface,
  job: {
    readonly result: SubmitResult;
    readonly user: string;
    readonly prompt: string;
    readonly jobKind: JobKind;
    readonly parentIndex: number | undefined;
    /** Image-to-image: the job's strength. */
    readonly strength?: number | undefined;
    readonly warnings: readonly string[];
  },
): QueuedView {
  const { result } = job;
  return {
    kind: 'queued',
    recordId: result.jobId,
    jobKind: job.jobKind,
    seeds: result.seeds,
    position: result.position,
    warnings: job.warnings,
    text: queuedText(surface.markup, surface.limits.maxTextLength, {
      user: job.user,
      prompt: job.prompt,
      jobKind: job.jobKind,
      ...(job.parentIndex === undefined ? {} : { parentIndex: job.parentIndex }),
      ...(job.strength === undefined ? {} : { strength: job.strength }),
      seeds: result.seeds,
      position: result.position,
      warnings: job.warnings,
    }),
    controls: cancelControls(result.jobId),
  };
}

export function progressView(
  surface: ChatSurface,
  event: ProgressEvent,
  job: { readonly owner: string; readonly prompt: string },
): ProgressView {
  const percent = event.total > 0 ? Math.round((100 * event.step) / event.total) : 0;
  return {
    kind: 'progress',
    recordId: event.jobId,
    step: event.step,
    total: event.total,
    percent,
    text: progressText(surface.markup, surface.limits.maxTextLength, {
      user: job.owner,
      prompt: job.prompt,
      step: event.step,
      total: event.total,
      percent,
    }),
    ...(event.preview !== undefined && surface.limits.progressPreviews
      ? { preview: { name: 'preview.png', contentType: 'image/png' as const, data: event.preview } }
      : {}),
    controls: cancelControls(event.jobId),
  };
}

/** `shown`: the grid after the NSFW policy (bots/service/nsfw.ts); absent, the grid as made. */
export async function gridView(
  surface: ChatSurface,
  record: GridRecord,
  grid: Buffer,
  shown?: Shown,
): Promise<GridView> {
  const images: GridImageInfo[] = record.spec.prompts.map((prompt, index) => ({
    index,
    prompt,
    seed: record.spec.seeds[index] ?? 0,
    truncatedTokens: record.result?.truncatedTokens[index] ?? 0,
  }));
  const settings = settingsOf(record.spec);
  const treated = shown !== undefined && shown.withheld.length + shown.blurred.length > 0;
  // What the policy did replaces the plain "flagged" note.
  const notes = [
    ...(treated ? nsfwNotes(shown) : []),
    ...gridNotes(images, record.result?.model, treated ? undefined : record.result?.nsfw),
  ];
  const fitted = await fitUpload(shown?.png ?? grid, `${record.id}-grid`, surface.limits.maxUploadBytes);
  const file = shown !== undefined && shown.blurred.length > 0 ? { ...fitted, spoiler: true } : fitted;
  return {
    kind: 'grid',
    recordId: record.id,
    jobKind: record.spec.kind,
    owner: record.spec.origin.user,
    images,
    settings,
    notes,
    file,
    controls: gridControls(record.id, images.length),
    text: gridText(surface.markup, surface.limits.maxTextLength, {
      owner: record.spec.origin.user,
      jobKind: record.spec.kind,
      ...(record.spec.parent?.index === undefined ? {} : { parentIndex: record.spec.parent.index }),
      ...(record.spec.strength === undefined ? {} : { strength: record.spec.strength }),
      images,
      settings,
      notes,
    }),
  };
}

export function failureView(surface: ChatSurface, event: DeliveryEvent & { type: 'failed' }): FailureView {
  const record = event.record;
  // An internal failure shows only its error id, in the one wording every internal error uses.
  const reason = event.userFacing ? event.reason : somethingWentWrong(event.errorId);
  return {
    kind: 'failed',
    recordId: record.id,
    reason,
    ...(event.errorId === undefined ? {} : { errorId: event.errorId }),
    text: failureText(surface.markup, surface.limits.maxTextLength, {
      owner: record.spec.origin.user,
      prompt: displayPrompt(record.spec.prompts),
      reason,
    }),
  };
}

export function cancelledView(
  surface: ChatSurface,
  event: DeliveryEvent & { type: 'cancelled' },
): CancelledView {
  const record = event.record;
  const by = displayUser(surface.markup, surface.surface, event.by);
  return {
    kind: 'cancelled',
    recordId: record.id,
    by: event.by,
    text: cancelledText(surface.markup, surface.limits.maxTextLength, {
      owner: record.spec.origin.user,
      prompt: displayPrompt(record.spec.prompts),
      by,
    }),
  };
}
