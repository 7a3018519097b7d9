import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import {
  type BlockAction,
  type ButtonAction,
  HTTPReceiver,
  LogLevel,
  type Receiver,
  type SlashCommand,
  SocketModeReceiver,
} from '@slack/bolt';
import { CodedError, ErrorCode } from '../../core/errors.ts';
import type { Logger } from '../logger.ts';
import type { InteractionReply } from '../surface.ts';
import type { boltLogger } from './errors.ts';
import { DEFAULTS, type SlackAdapterOptions, type SlackConversation, type SlackMode } from './options.ts';
import type { ReplyContext } from './web-api.ts';

/**
 * Receiving from Slack: bolt's receiver for socket or http mode (stamping each interaction's arrival
 * for the ack timing), the http server, and the slash command and button payloads turned into the
 * service's commands.
 */

/** Arrival time stamped on each HTTP request before bolt reads it. */
const RECEIVED_AT = Symbol('receivedAt');
type StampedRequest = IncomingMessage & { [RECEIVED_AT]?: number };

/** Bolt receiver for the mode: signed HTTP requests, or a Socket Mode connection. */
export function createReceiver(
  options: SlackAdapterOptions,
  mode: SlackMode,
  logger: ReturnType<typeof boltLogger>,
  logLevel: LogLevel,
  apiUrl: string,
): Receiver {
  if (mode === 'http') {
    if (options.signingSecret === undefined) {
      throw new CodedError(ErrorCode.Config, 'Slack http mode needs a signing secret (SLACK_SIGNING_SECRET)');
    }
    // bolt verifies every request's v0 signature and refuses forged or stale (> 5 min) ones with 401.
    return new HTTPReceiver({
      signingSecret: options.signingSecret,
      endpoints: options.path ?? DEFAULTS.path,
      logger,
      logLevel,
      customPropertiesExtractor: (req) => ({ receivedAt: (req as StampedRequest)[RECEIVED_AT] }),
    });
  }
  if (options.appToken === undefined) {
    throw new CodedError(ErrorCode.Config, 'Slack socket mode needs an app-level token (SLACK_APP_TOKEN)');
  }
  // apps.connections.open goes to the same API base; it keeps the socket client's own retries.
  return new SocketModeReceiver({
    appToken: options.appToken,
    logger,
    logLevel,
    installerOptions: { clientOptions: { slackApiUrl: apiUrl } },
    // Called as the envelope arrives, before bolt processes it.
    customPropertiesExtractor: () => ({ receivedAt: performance.now() }),
  });
}

/**
 * HTTP mode's server: bolt's request listener behind a server of ours, which stamps each
 * request's arrival so the ack time can be measured from receipt.
 */
export async function listenHttp(receiver: HTTPReceiver, options: SlackAdapterOptions): Promise<Server> {
  const server = createServer((req: StampedRequest, res) => {
    req[RECEIVED_AT] = performance.now();
    try {
      receiver.requestListener(req, res);
    } catch {
      // bolt throws for paths it does not serve.
      res.writeHead(404);
      res.end();
    }
  });
  server.listen({
    port: options.port ?? DEFAULTS.port,
    ...(options.host === undefined ? {} : { host: options.host }),
  });
  await Promise.race([
    once(server, 'listening'),
    once(server, 'error').then(([error]) => Promise.reject(error as Error)),
  ]);
  return server;
}

/** The slash command as an imagine command, replied to where it was typed. */
export async function onCommand(
  service: SlackConversation,
  command: SlashCommand,
  reply: (context: ReplyContext) => InteractionReply,
): Promise<void> {
  const context: ReplyContext = {
    channel: command.channel_id,
    user: command.user_id,
    responseUrl: command.response_url,
  };
  await service.imagine(
    {
      surface: 'slack',
      user: command.user_id,
      ...(command.user_name ? { userName: command.user_name } : {}),
      channel: command.channel_id,
      workspace: command.team_id,
      interactionId: command.trigger_id,
      text: command.text,
    },
    reply(context),
  );
}

/** A button press as a control press, replied to in the pressed grid's thread. */
export async function onPress(
  service: SlackConversation,
  log: Logger,
  body: BlockAction<ButtonAction>,
  action: ButtonAction,
  reply: (context: ReplyContext) => InteractionReply,
): Promise<void> {
  const container = body.container as {
    channel_id?: string;
    message_ts?: string;
    thread_ts?: string;
    is_ephemeral?: boolean;
  };
  const channel = body.channel?.id ?? container.channel_id;
  if (channel === undefined) {
    log.warn({ actionId: action.action_id }, 'button press without a channel: ignored');
    return;
  }
  // Replies go in the grid's thread: its root when the grid is itself a thread reply.
  // An ephemeral message (`/imagine history`) can't hold a thread: its replies go in the channel.
  const thread =
    container.thread_ts ??
    (container.is_ephemeral === true ? undefined : (container.message_ts ?? body.message?.ts));
  const context: ReplyContext = {
    channel,
    user: body.user.id,
    ...(thread === undefined ? {} : { thread }),
    responseUrl: body.response_url,
  };
  const userName = body.user.username ?? body.user.name;
  await service.press(
    {
      surface: 'slack',
      user: body.user.id,
      ...(userName ? { userName } : {}),
      channel,
      ...(body.team?.id === undefined ? {} : { workspace: body.team.id }),
      ...(thread === undefined ? {} : { thread }),
      interactionId: body.trigger_id || `${container.message_ts ?? ''}-${action.action_ts}-${body.user.id}`,
      controlId: action.value ?? '',
    },
    reply(context),
  );
}

export function levelOf(pinoLevel: string): LogLevel {
  switch (pinoLevel) {
    case 'trace':
    case 'debug':
      return LogLevel.DEBUG;
    case 'info':
      return LogLevel.INFO;
    case 'warn':
      return LogLevel.WARN;
    default:
      return LogLevel.ERROR;
  }
}
