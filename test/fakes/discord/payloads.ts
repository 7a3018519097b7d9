import type {
  APIChannel,
  APIGuildMember,
  APIMessage,
  APIUser,
  GatewayGuildCreateDispatchData,
} from 'discord.js';

/** Discord's epoch (2015-01-01T00:00:00Z); snowflakes carry ms since it in their top 42 bits. */
export const DISCORD_EPOCH = 1_420_070_400_000n;

let increment = 0n;

/** A real-shaped snowflake (17-20 digits) for the given time. */
export function snowflake(at: number = Date.now()): string {
  increment = (increment + 1n) & 0xfffn;
  return (((BigInt(at) - DISCORD_EPOCH) << 22n) | (1n << 17n) | increment).toString();
}

export function timestampOf(id: string): number {
  return Number((BigInt(id) >> 22n) + DISCORD_EPOCH);
}

export interface FakeUser {
  readonly id: string;
  readonly username: string;
}

export function apiUser(user: FakeUser, bot = false): APIUser {
  return {
    id: user.id,
    username: user.username,
    discriminator: '0',
    global_name: user.username,
    avatar: null,
    ...(bot ? { bot: true } : {}),
  };
}

export function apiMember(user: FakeUser, joinedAt: string): APIGuildMember & { permissions: string } {
  return {
    user: apiUser(user),
    roles: [],
    joined_at: joinedAt,
    deaf: false,
    mute: false,
    flags: 0,
    pending: false,
    nick: null,
    avatar: null,
    premium_since: null,
    communication_disabled_until: null,
    // VIEW_CHANNEL | SEND_MESSAGES | USE_APPLICATION_COMMANDS | ATTACH_FILES …
    permissions: '2248473465835073',
  } as unknown as APIGuildMember & { permissions: string };
}

export function textChannel(id: string, guildId: string, name: string): APIChannel {
  return {
    id,
    type: 0,
    guild_id: guildId,
    name,
    position: 0,
    permission_overwrites: [],
    nsfw: false,
    topic: null,
    last_message_id: null,
    rate_limit_per_user: 0,
    parent_id: null,
    flags: 0,
  } as unknown as APIChannel;
}

export function guildCreate(
  guildId: string,
  name: string,
  channels: readonly APIChannel[],
  ownerId: string,
  now: string,
): GatewayGuildCreateDispatchData {
  return {
    id: guildId,
    name,
    icon: null,
    splash: null,
    discovery_splash: null,
    owner_id: ownerId,
    region: 'deprecated',
    afk_channel_id: null,
    afk_timeout: 300,
    verification_level: 0,
    default_message_notifications: 0,
    explicit_content_filter: 0,
    roles: [
      {
        id: guildId,
        name: '@everyone',
        color: 0,
        colors: { primary_color: 0, secondary_color: null, tertiary_color: null },
        hoist: false,
        icon: null,
        unicode_emoji: null,
        position: 0,
        permissions: '2248473465835073',
        managed: false,
        mentionable: false,
        flags: 0,
      },
    ],
    emojis: [],
    features: [],
    mfa_level: 0,
    application_id: null,
    system_channel_id: null,
    system_channel_flags: 0,
    rules_channel_id: null,
    vanity_url_code: null,
    description: null,
    banner: null,
    premium_tier: 0,
    preferred_locale: 'en-US',
    public_updates_channel_id: null,
    nsfw_level: 0,
    stickers: [],
    premium_progress_bar_enabled: false,
    hub_type: null,
    safety_alerts_channel_id: null,
    incidents_data: null,
    joined_at: now,
    large: false,
    unavailable: false,
    member_count: 2,
    voice_states: [],
    members: [],
    channels: channels as GatewayGuildCreateDispatchData['channels'],
    threads: [],
    presences: [],
    stage_instances: [],
    guild_scheduled_events: [],
    soundboard_sounds: [],
    max_video_channel_users: 25,
    max_stage_video_channel_users: 50,
    approximate_member_count: 2,
    approximate_presence_count: 1,
    nsfw: false,
  } as unknown as GatewayGuildCreateDispatchData;
}

/** A stored message: the API shape plus the bytes of its attachments (served under /attachments). */
export interface StoredMessage {
  message: APIMessage;
  /** Interaction token that owns it (webhook messages), if any. */
  token?: string;
}

/**
 * Message content as Discord shows it, as far as escapes go: its markdown shows a backslash followed
 * by any character that is not a letter, digit or space as that character alone.
 */
export function shownContent(content: string): string {
  return content.replace(/\\([^0-9A-Za-z\s])/gu, '$1');
}

/**
 * A reference check of what Discord's markdown would still act on: every escape (a backslash and the
 * mark it shows) becomes a neutral space, so what is left is the live text, where `](`, `https:`,
 * `@everyone` or `**` would format, link or ping. Spaces keep positions apart, so `\]\(` stays dead.
 */
export function liveMarkdown(content: string): string {
  return content.replace(/\\([^0-9A-Za-z\s])/gu, ' ');
}
