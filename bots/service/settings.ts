import { type Config, type RequestLimits, requestLimitsFrom } from '../../core/config.ts';
import type { ErrorLogger } from '../../core/errors.ts';
import type { NsfwPolicy } from '../../core/nsfw.ts';

/** What the conversation service is configured with, and the texts it says that are not about one job. */

export interface ServiceSettings {
  readonly limits: RequestLimits;
  /** Refinement suffixes, 1-4. */
  readonly suffixes: readonly string[];
  /** Only the requester may press refine/reroll/upscale. */
  readonly ownerOnlyButtons: boolean;
  /** `surface:user` ids that may cancel anyone's job. */
  readonly adminUsers: readonly string[];
  /** Words refused in every prompt (BANNED_WORDS); teams add to them. @defaultValue none */
  readonly bannedWords?: readonly string[];
  /** NSFW_POLICY: flagged images where no team sets a policy (core/nsfw.ts). @defaultValue 'block' */
  readonly nsfwPolicy?: NsfwPolicy;
  /** Shown in the "expired" message. */
  readonly recordTtlDays: number;
  /**
   * Least time between two progress edits of one message.
   * @defaultValue 2000
   */
  readonly progressIntervalMs?: number;
}

export function serviceSettingsFrom(config: Config): ServiceSettings {
  return {
    limits: requestLimitsFrom(config),
    suffixes: config.SUFFIXES,
    ownerOnlyButtons: config.OWNER_ONLY_BUTTONS,
    adminUsers: config.ADMIN_USERS,
    bannedWords: config.BANNED_WORDS,
    nsfwPolicy: config.NSFW_POLICY,
    recordTtlDays: config.RECORD_TTL_DAYS,
  };
}

/** The logger the service needs (pino satisfies it). */
export interface ServiceLog extends ErrorLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export const SILENT_LOG: ServiceLog = { debug() {}, info() {}, warn() {}, error() {} };

/** User-facing texts that are not about one job. */
export const MESSAGES = {
  invalidControl:
    'That button is not valid (it may have been altered or come from another app). Use the buttons on a grid.',
  notOwner: 'Only the person who made this grid can use its buttons here.',
  notCanceller: 'Only the person who asked for this job, or an admin, can cancel it.',
  otherChannel: 'These buttons work only in the channel where the grid was made.',
  withheldImage: (n: number) =>
    `Image ${n} was withheld by this channel's content policy, so it cannot be varied or upscaled here.`,
  notFinished: 'This grid is not finished yet; its buttons work once it is done.',
  cannotPost:
    "I can't post in this channel, so I cancelled this request. Invite me first (e.g. `/invite @imagine`), or use /imagine in a channel I'm in.",
  modelUnserved: (model: string) =>
    `No worker serving the model \`${model}\` is running right now; your request waits in its queue and runs once one starts.`,
  teamModelUnserved: (wanted: string, used: string) =>
    `This channel's default model \`${wanted}\` is not served here, so \`${used}\` was used.`,
  expired: (days: number) =>
    `This grid has expired (grids are kept for ${formatDays(days)}). Run /imagine again to make a new one.`,
} as const;

function formatDays(days: number): string {
  if (days >= 1) return `${Number(days.toFixed(1))} day${days === 1 ? '' : 's'}`;
  const hours = days * 24;
  if (hours >= 1) return `${Number(hours.toFixed(1))} hours`;
  return `${Math.max(1, Math.round(hours * 60))} minutes`;
}
