import type { Config } from '../../core/config.ts';
import type { Logger } from '../logger.ts';
import type { HistoryHandler } from '../service/history.ts';
import type { ConversationService } from '../service.ts';
import type { SettingsHandler } from './settings-modal.ts';

/** The Slack adapter's options, their defaults, and how they come from the validated config. */

/** The part of the conversation service the adapter uses. */
export type SlackConversation = Pick<ConversationService, 'imagine' | 'press' | 'attach'>;

export type SlackMode = 'socket' | 'http';

export interface SlackAdapterOptions {
  readonly service: SlackConversation;
  readonly log: Logger;
  /** Bot token (xoxb-…). */
  readonly botToken: string;
  /** @defaultValue `'socket'` */
  readonly mode?: SlackMode;
  /** App-level token (xapp-…, scope connections:write); required in socket mode. */
  readonly appToken?: string;
  /** Signing secret; required in http mode. */
  readonly signingSecret?: string;
  /** HTTP mode listen port (0: any free port). @defaultValue 3000 */
  readonly port?: number;
  /** HTTP mode listen address. @defaultValue all interfaces */
  readonly host?: string;
  /** HTTP mode path of the events/interactivity/commands endpoint. @defaultValue `'/slack/events'` */
  readonly path?: string;
  /** Web API base. @defaultValue `'https://slack.com/api/'` */
  readonly apiUrl?: string;
  /** @defaultValue `'/imagine'` */
  readonly command?: string;
  /** Timeout of one Web API call, ms. @defaultValue 30000 */
  readonly apiTimeoutMs?: number;
  /** Called after each acknowledgement with the time since the interaction was received (metrics, benchmarks). */
  readonly onAck?: (timing: AckTiming) => void;
  /** `/imagine-settings` and its modal: registered only when given (ConversationService.teamSettings). */
  readonly teamSettings?: SettingsHandler;
  /** @defaultValue `'/imagine-settings'` */
  readonly settingsCommand?: string;
  /** `/imagine history` (ConversationService.history). @defaultValue none: it says history is not enabled */
  readonly history?: HistoryHandler;
}

export interface AckTiming {
  readonly kind: 'command' | 'action';
  /** From receipt (HTTP request arrival, or Socket Mode envelope arrival) to the ack sent. */
  readonly ms: number;
}

/** Adapter settings from the validated config; undefined when Slack is off (no bot token). */
export function slackSettingsFrom(config: Config): Omit<SlackAdapterOptions, 'service' | 'log'> | undefined {
  if (config.SLACK_BOT_TOKEN === undefined) return undefined;
  return {
    botToken: config.SLACK_BOT_TOKEN,
    mode: config.SLACK_MODE,
    ...(config.SLACK_APP_TOKEN === undefined ? {} : { appToken: config.SLACK_APP_TOKEN }),
    ...(config.SLACK_SIGNING_SECRET === undefined ? {} : { signingSecret: config.SLACK_SIGNING_SECRET }),
    port: config.SLACK_PORT,
    apiUrl: config.SLACK_API_URL,
  };
}

export const DEFAULTS = {
  mode: 'socket',
  port: 3000,
  path: '/slack/events',
  apiUrl: 'https://slack.com/api/',
  command: '/imagine',
  apiTimeoutMs: 30_000,
} as const satisfies Partial<SlackAdapterOptions>;
