import type { RequestLimits } from '../../core/config.ts';
import type { GridRecord, Jobs } from '../../queue/index.ts';
import type { Logger } from '../logger.ts';
import type { Health } from '../ops/health.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { HistoryQuery, HistoryView } from '../service/history.ts';
import type { NsfwWhere } from '../service/nsfw.ts';
import type { TeamSettingsStore } from '../settings/store.ts';
import type { ControlPress, ImagineCommand, InteractionResult, Markup } from '../surface.ts';
import type { IdentityIssueLimit } from './auth.ts';
import type { HttpReply, WebSurface } from './surface.ts';

/** What the playground server is given, and the job id and channel shapes its routes share. */

/** The part of the conversation service the playground drives (ConversationService satisfies it). */
export interface PlaygroundService {
  /** Answers with the id of the job made (the queue's, never predicted here), when one was. */
  imagine(command: ImagineCommand, reply: HttpReply): Promise<InteractionResult | undefined>;
  /** Answers with the id of the job made (refine, reroll) or acted on (cancel, full size). */
  press(press: ControlPress, reply: HttpReply): Promise<InteractionResult | undefined>;
  /** A finished job's PNG as shown here under the NSFW policy (absent: served as stored). */
  showResult?(
    record: GridRecord,
    index: number | undefined,
    png: Buffer,
    where: NsfwWhere,
  ): Promise<{ readonly png: Buffer; readonly notes: readonly string[] }>;
  /** What the NSFW policy here does to a finished job's images, as notes. */
  nsfwNotesFor?(record: GridRecord, where: NsfwWhere): Promise<readonly string[]>;
  /** The caller's last grids (`GET /api/history`; absent: that route answers 404). */
  history?(query: HistoryQuery, markup: Markup): Promise<HistoryView>;
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
  /** Team settings: `GET/PUT /api/settings`. @defaultValue none (those routes answer 404) */
  readonly teamSettings?: PlaygroundTeamSettings;
}

/** The playground's team settings (`GET/PUT /api/settings`). */
export interface PlaygroundTeamSettings {
  readonly store: TeamSettingsStore;
  /** For checking steps and aspect against the deployment's limits. */
  readonly limits: RequestLimits;
}

/** Playground job ids: only jobs made on the web are visible here (Discord and Slack jobs are not). */
export const WEB_JOB_ID_RE = /^web-[A-Za-z0-9_-]{1,64}$/u;
/** Any surface's job id shape, to tell "not a job id" from "not a job you can see". */
export const ANY_JOB_ID_RE = /^[a-z]+-[A-Za-z0-9_-]{1,64}$/u;

/** The channel every playground job is posted in (the page is one shared room). */
export const PLAYGROUND_CHANNEL = 'playground';

/** The playground's workspace: the whole playground is one team for team settings. */
export const PLAYGROUND_WORKSPACE = 'playground';
