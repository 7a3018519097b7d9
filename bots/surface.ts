import type { GridSettings } from '../core/batch.ts';
import type { PublicError } from '../core/errors.ts';
import type { JobKind, Surface } from '../core/jobspec.ts';
import type { ImagineOptions } from '../core/request.ts';
import type { VaryStrength } from '../core/vary.ts';
import type { DeliveryContext } from '../queue/index.ts';
import type { ImageInput } from './attachments/image.ts';

/**
 * The contract between the conversation service (bots/service/, which decides) and a chat adapter
 * (Discord, Slack, web: which render). Adapters translate their events into the commands below, hand
 * the service an `InteractionReply` for the interaction at hand, and implement `ChatSurface` for what
 * arrives later (progress, results). Every text the user sees is composed by the service with the
 * adapter's `Markup`, so the wording is the same on every surface.
 */

/** Named, at-most-once side effects of one delivery (see queue's `DeliveryContext.once`). */
export type DeliverySteps = Pick<DeliveryContext, 'once'>;

/** Adapter-private reference to where a job is shown (interaction token, message id, ts…). Opaque to the service. */
export type MessageRef = Readonly<Record<string, string>>;

/** Fields every user action carries. */
interface ActionBase {
  readonly surface: Surface;
  /** The acting user's id on that surface. */
  readonly user: string;
  /** Display name, for captions. */
  readonly userName?: string;
  readonly channel: string;
  /** The workspace (Slack team, Discord guild) the channel belongs to: the scope of team settings. */
  readonly workspace?: string;
  /** Discord: the channel is marked age-restricted (NSFW); the NSFW policy depends on it. */
  readonly ageRestricted?: boolean;
  /** Thread to post in (Slack thread_ts), when the surface has threads. */
  readonly thread?: string;
  /** Unique id of this interaction; a redelivered interaction carries the same id (one job). */
  readonly interactionId: string;
  /** Stored with the job this action creates, handed back in `JobTarget.messageRef`. */
  readonly messageRef?: MessageRef;
}

/** `/imagine`, as typed options (Discord) or one text with inline flags (Slack, web). */
export type ImagineCommand = ActionBase &
  (
    | { readonly text: string; readonly options?: never }
    | { readonly options: ImagineOptions; readonly text?: never }
  ) & {
    /** An image prompt's picture (Discord attachment, Slack's shared file, playground upload). */
    readonly image?: ImageInput;
  };

/** A button press. `controlId` is the string the adapter got back (Discord custom_id, Slack value). */
export interface ControlPress extends ActionBase {
  readonly controlId: string;
}

/**
 * `upscale` posts image N at full size (U1–U4); `vary` makes four variations of image N (V1–V4, and the
 * image message's Vary buttons) at a strength; `upscale2x` renders image N at twice the size.
 */
export const CONTROL_ACTIONS = ['refine', 'reroll', 'upscale', 'cancel', 'vary', 'upscale2x'] as const;
export type ControlAction = (typeof CONTROL_ACTIONS)[number];

/** A button, described surface-neutrally. Render `label` and send `id` back in `ControlPress.controlId`. */
export interface Control {
  readonly action: ControlAction;
  readonly recordId: string;
  /** Image index (0-based) for refine/upscale/vary/upscale2x; 0 otherwise. */
  readonly index: number;
  /** Vary: which strength (subtle or strong). */
  readonly strength?: VaryStrength;
  readonly label: string;
  /** Encoded `action:recordId:index[:strength]` (≤ 100 chars, Discord's custom_id limit). */
  readonly id: string;
  readonly style: 'primary' | 'secondary' | 'danger';
}

/** Buttons in rows (Discord: ≤ 5 per row). */
export type ControlRows = readonly (readonly Control[])[];

export interface Attachment {
  readonly name: string;
  readonly contentType: 'image/png' | 'image/webp' | 'image/jpeg';
  readonly data: Buffer;
  /** Hide it behind a spoiler where the surface can (Discord: a `SPOILER_` file name); the NSFW policy's blur. */
  readonly spoiler?: boolean;
}

/** Settings shown with a grid: core's, the same shape the job spec has. */
export type { GridSettings } from '../core/batch.ts';

/** The public message of a job that was just queued. */
export interface QueuedView {
  readonly kind: 'queued';
  readonly recordId: string;
  readonly jobKind: JobKind;
  readonly seeds: readonly number[];
  /** Jobs ahead (0 = next). */
  readonly position: number;
  readonly warnings: readonly string[];
  /** Ready to post, in the surface's markup. */
  readonly text: string;
  /** Cancel. */
  readonly controls: ControlRows;
}

export interface ProgressView {
  readonly kind: 'progress';
  readonly recordId: string;
  readonly step: number;
  readonly total: number;
  /** 0-100. */
  readonly percent: number;
  readonly text: string;
  /** Latent preview of image 1, when the worker made one and the surface shows previews. */
  readonly preview?: Attachment;
  /** Cancel. */
  readonly controls: ControlRows;
}

export interface GridImageInfo {
  readonly index: number;
  readonly prompt: string;
  readonly seed: number;
  /** CLIP tokens dropped from this image's prompt (0 = none). */
  readonly truncatedTokens: number;
}

/** The finished grid: one message with the image, its caption and the controls. */
export interface GridView {
  readonly kind: 'grid';
  readonly recordId: string;
  readonly jobKind: JobKind;
  /** Requester's user id on this surface. */
  readonly owner: string;
  readonly images: readonly GridImageInfo[];
  readonly settings: GridSettings;
  /** Truncation, demo model, safety notes; already in `text`. */
  readonly notes: readonly string[];
  readonly text: string;
  /** The grid, PNG or (over the size limit) WebP/JPEG. */
  readonly file: Attachment;
  /** Row 1: refine 1-4 and reroll; row 2: U1-U4. */
  readonly controls: ControlRows;
}

/** One image of a grid at full size (U1-U4). */
export interface ImageView {
  readonly kind: 'image';
  readonly recordId: string;
  readonly index: number;
  readonly seed: number;
  readonly prompt: string;
  readonly text: string;
  readonly file: Attachment;
  /** Vary (Subtle), Vary (Strong), Upscale ×2 for this image. */
  readonly controls: ControlRows;
}

export interface FailureView {
  readonly kind: 'failed';
  readonly recordId: string;
  readonly text: string;
  /** The reason shown (user-facing reason, or a generic message with the error id). */
  readonly reason: string;
  readonly errorId?: string;
}

export interface CancelledView {
  readonly kind: 'cancelled';
  readonly recordId: string;
  readonly text: string;
  /** Who cancelled (`surface:user` or a user id). */
  readonly by: string;
}

/** Where a job's messages live: the record's channel/thread and the adapter's own reference. */
export interface JobTarget {
  readonly recordId: string;
  readonly channel: string;
  readonly thread?: string;
  /** The origin's messageRef merged with every `InteractionReply.queued` patch. */
  readonly messageRef: MessageRef;
  /** When the interaction that created the job arrived (ms since the epoch): Discord tokens last 15 min. */
  readonly requestedAt: number;
  /** Requester's user id. */
  readonly owner: string;
}

/** How to write text on a surface. */
export interface Markup {
  bold(text: string): string;
  /** Inline code (seeds, values). */
  code(text: string): string;
  mention(user: string): string;
  /** Makes user text (prompts) render literally. */
  escape(text: string): string;
}

export interface SurfaceLimits {
  /** Largest attachment the surface accepts (Discord: 10 MiB). */
  readonly maxUploadBytes: number;
  /** Longest message text (Discord content: 2000). */
  readonly maxTextLength: number;
  /** Whether progress edits should carry the latent preview image. */
  readonly progressPreviews: boolean;
}

/**
 * What the service answers an adapter once an interaction is handled: the id of the job it made
 * (imagine, refine, reroll; the existing one for a redelivered interaction) or acted on (cancel,
 * full size). The queue makes job ids; an adapter that shows one takes it from here, never derives it.
 */
export interface InteractionResult {
  readonly jobId?: string;
}

/**
 * Answers to one interaction (command or button press). The service calls `accept()` or
 * `privately()` first, synchronously after pure parsing and before any Redis round trip, so the
 * adapter can acknowledge within the chat's deadline (Discord 3 s, Slack 3 s). Every method may
 * throw; the service logs and carries on.
 */
export interface InteractionReply {
  /**
   * Acknowledges without a visible answer yet. Command: a public placeholder that `queued()` fills
   * (Discord deferReply, Slack ack). Button: no visible change (Discord deferUpdate, Slack ack).
   */
  accept(): Promise<void>;
  /**
   * A private (ephemeral) message to the acting user. Called first, it is also the acknowledgement.
   * `error` carries the code behind a refusal (queue full, forbidden…) for surfaces that map it (HTTP status).
   */
  privately(text: string, error?: PublicError): Promise<void>;
  /**
   * Shows a newly queued job publicly. Command: fills the placeholder. Button (refine/reroll): a new
   * message (a thread reply where the surface has threads). Returns a patch for the job's messageRef
   * (e.g. the new message id) that later `ChatSurface` calls get back in `JobTarget.messageRef`.
   */
  queued(view: QueuedView): Promise<MessageRef | undefined>;
  /** Posts one image full-size, publicly. */
  image(view: ImageView): Promise<void>;
}

/**
 * What the service calls for things that happen after the interaction: progress and results.
 * Result methods throw when the chat API fails, so the durable delivery is retried; each is wrapped
 * by the service in `DeliveryContext.once`, so a retried delivery never posts twice. They return an
 * id of what was posted (message id/ts), recorded with the delivery step.
 */
export interface ChatSurface {
  readonly surface: Surface;
  readonly markup: Markup;
  readonly limits: SurfaceLimits;
  /** Edits the job's message with progress. Best effort: failures are logged, never retried. */
  showProgress(target: JobTarget, view: ProgressView): Promise<void>;
  /**
   * `steps` is the delivery's idempotency log, for surfaces that post a grid in several calls (Slack:
   * upload, then buttons): each call under its own step, so a retry resumes where the last attempt stopped.
   */
  showGrid(target: JobTarget, view: GridView, steps?: DeliverySteps): Promise<string>;
  showFailure(target: JobTarget, view: FailureView): Promise<string>;
  showCancelled(target: JobTarget, view: CancelledView): Promise<string>;
}
