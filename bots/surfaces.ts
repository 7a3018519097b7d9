import type { Config } from '../core/config.ts';
import type { Role } from './app.ts';

/** One line of the start-up summary: what runs in this process, and how to turn on what doesn't. */
export interface SurfaceStatus {
  readonly surface: 'playground' | 'worker' | 'discord' | 'slack';
  readonly on: boolean;
  /** Where it is (on), or the variable or command that would turn it on (off). */
  readonly detail: string;
}

/** Pure: what `startApp` turns on for this role and configuration. */
export function describeSurfaces(config: Config, role: Role, url: string): SurfaceStatus[] {
  const chat = role !== 'worker';
  const botRole = 'runs in `npm start` or `npm run bot`, not in a worker';
  const slackOn = chat && config.SLACK_BOT_TOKEN !== undefined;
  return [
    chat
      ? { surface: 'playground', on: true, detail: url }
      : { surface: 'playground', on: false, detail: botRole },
    role === 'bot'
      ? {
          surface: 'worker',
          on: false,
          detail: 'start `npm run worker` (one per GPU) with the same REDIS_URL and QUEUE_PREFIX',
        }
      : { surface: 'worker', on: true, detail: role === 'worker' ? `health on ${url}` : 'in this process' },
    !chat
      ? { surface: 'discord', on: false, detail: botRole }
      : config.DISCORD_TOKEN !== undefined
        ? {
            surface: 'discord',
            on: true,
            detail: config.DISCORD_GUILD_ID ? 'guild commands' : 'global commands',
          }
        : { surface: 'discord', on: false, detail: 'set DISCORD_TOKEN and DISCORD_APP_ID' },
    !chat
      ? { surface: 'slack', on: false, detail: botRole }
      : slackOn
        ? {
            surface: 'slack',
            on: true,
            detail: config.SLACK_MODE === 'http' ? `http on port ${config.SLACK_PORT}` : 'socket mode',
          }
        : {
            surface: 'slack',
            on: false,
            detail:
              'set SLACK_BOT_TOKEN with SLACK_APP_TOKEN (socket mode), or with SLACK_SIGNING_SECRET and SLACK_MODE=http',
          },
  ];
}

/** `discord: off (set DISCORD_TOKEN and DISCORD_APP_ID)`. */
export function surfaceLine(status: SurfaceStatus): string {
  return `${status.surface}: ${status.on ? 'on' : 'off'} (${status.detail})`;
}
