import { EventEmitter } from 'node:events';
import { ErrorCode, UserError } from '../../core/errors.ts';
import type { DefaultsLayer } from '../../core/generation-defaults.ts';
import type { Surface } from '../../core/jobspec.ts';
import {
  type EffectiveSettings,
  effectiveSettings,
  type TeamSettings,
  type TeamSettingsPatch,
  teamDefaultsLayer,
  teamSettingsSchema,
} from '../../core/team-settings.ts';
import {
  closeRedisClient,
  createRedisClient,
  type RedisConnection,
  whenConnected,
} from '../../queue/index.ts';
import type { ServiceLog } from '../service/settings.ts';

/**
 * Team settings in Redis, cached in each bot process.
 *
 * Why in bots/ and not queue/: settings are the conversation service's (it resolves them once per
 * command and decides with them); the queue never reads them. Like the playground's signing secret
 * (bots/web/secret.ts), the store reaches Redis through queue/index.ts's client factory, under the
 * deployment's QUEUE_PREFIX.
 *
 * Layout: one hash per scope, a field per setting holding its JSON value, so a partial update is
 * HSET/HDEL of the fields it names and two concurrent updates of different fields both land. After
 * a change the writer drops its own cache entry and publishes the scope's key; every other process
 * drops its entry when the message arrives, so the next command reads the new value. While a
 * process is not subscribed (starting, reconnecting) it caches nothing, and on every (re)subscribe
 * it drops its whole cache: a message missed while disconnected can't leave a stale entry behind.
 */

/** A scope: a workspace (Slack team, Discord guild, the playground), or one channel in it. */
export interface ScopeRef {
  readonly surface: Surface;
  readonly workspace: string;
  /** Absent: the workspace scope. */
  readonly channel?: string;
}

/** Who changed a setting, for the change log. */
export interface SettingsActor {
  readonly surface: Surface;
  readonly user: string;
}

/** The settings for one channel, and where a per-user quota is counted. */
export interface ResolvedSettings {
  readonly effective: EffectiveSettings;
  /** The scope whose `dailyQuota` applies (the channel when it sets one, else the workspace). */
  readonly quotaScope: ScopeRef;
  /** The generation defaults the channel or workspace set themselves (they win over a model's own). */
  readonly teamDefaults: DefaultsLayer;
}

export interface TeamSettingsStoreOptions {
  readonly connection: RedisConnection;
  /** QUEUE_PREFIX. */
  readonly prefix: string;
  /** The environment's settings: the defaults under every scope. */
  readonly global: EffectiveSettings;
  readonly log: ServiceLog;
}

/** Changes kept in Redis for inspection (`<prefix>:settings:changes`), newest first. */
const CHANGE_LOG_LENGTH = 1000;

export class TeamSettingsStore extends EventEmitter<{ invalidated: [key: string] }> {
  readonly #prefix: string;
  readonly #global: EffectiveSettings;
  readonly #log: ServiceLog;
  readonly #client;
  readonly #subscriber;
  readonly #cache = new Map<string, Promise<TeamSettings>>();
  #subscribed = false;
  #started: Promise<void> | undefined;
  #connecting: Promise<void> | undefined;

  constructor(options: TeamSettingsStoreOptions) {
    super();
    this.#prefix = options.prefix;
    this.#global = options.global;
    this.#log = options.log;
    this.#client = createRedisClient(options.connection, { blocking: false, name: 'imagine-settings' });
    this.#subscriber = createRedisClient(options.connection, {
      blocking: true,
      name: 'imagine-settings-sub',
    });
    // Failures surface through commands (and the subscription's reconnects); the events would be "unhandled".
    this.#client.on('error', () => undefined);
    this.#subscriber.on('error', () => undefined);
    this.#subscriber.on('message', (channel: string, key: string) => {
      if (channel === this.#channel) this.#invalidate(key);
    });
    this.#subscriber.on('close', () => {
      this.#subscribed = false;
    });
    this.#subscriber.on('ready', () => {
      // A reconnect: ioredis re-subscribes by itself; messages sent meanwhile are lost, so start cold.
      if (this.#started !== undefined) void this.#subscribe();
    });
  }

  get global(): EffectiveSettings {
    return this.#global;
  }

  get #channel(): string {
    return `${this.#prefix}:settings:changed`;
  }

  /** Subscribes to changes. Until it has, every read goes to Redis. */
  start(): Promise<void> {
    this.#started ??= this.#subscribe();
    return this.#started;
  }

  async #subscribe(): Promise<void> {
    await this.#subscriber.subscribe(this.#channel);
    this.#cache.clear();
    this.#subscribed = true;
  }

  /** The Redis key of a scope's hash. Ids are encoded, so no id can reach into another scope's key. */
  keyOf(scope: ScopeRef): string {
    const workspace = `${this.#prefix}:settings:${scope.surface}:${encodeURIComponent(scope.workspace)}`;
    return scope.channel === undefined ? workspace : `${workspace}:ch:${encodeURIComponent(scope.channel)}`;
  }

  /** One scope's own overrides (not merged). */
  overrides(scope: ScopeRef): Promise<TeamSettings> {
    const key = this.keyOf(scope);
    const cached = this.#cache.get(key);
    if (cached !== undefined) return cached;
    const read = this.#read(key);
    // Cached as soon as the read is sent: a change published after that drops it (see the class comment).
    if (this.#subscribed) {
      this.#cache.set(key, read);
      read.catch(() => {
        if (this.#cache.get(key) === read) this.#cache.delete(key);
      });
    }
    return read;
  }

  /** The settings that apply in a channel: environment, then workspace, then channel. */
  async resolve(where: Required<ScopeRef>): Promise<ResolvedSettings> {
    const workspaceScope: ScopeRef = { surface: where.surface, workspace: where.workspace };
    const [workspace, channel] = await Promise.all([this.overrides(workspaceScope), this.overrides(where)]);
    return {
      effective: effectiveSettings(this.#global, workspace, channel),
      quotaScope: channel.dailyQuota === undefined ? workspaceScope : where,
      teamDefaults: teamDefaultsLayer(workspace, channel),
    };
  }

  /** Applies a validated patch (`null` drops a field), logs who changed what, and tells every process. */
  async update(scope: ScopeRef, patch: TeamSettingsPatch, actor: SettingsActor): Promise<TeamSettings> {
    const key = this.keyOf(scope);
    const set: string[] = [];
    const dropped: string[] = [];
    for (const [field, value] of Object.entries(patch)) {
      if (value === undefined) continue;
      if (value === null) dropped.push(field);
      else set.push(field, JSON.stringify(value));
    }
    const change = { at: new Date().toISOString(), scope, by: actor, patch };
    await unavailableOnFailure(async () => {
      await this.#connected();
      const tx = this.#client.multi();
      if (set.length > 0) tx.hset(key, ...set);
      if (dropped.length > 0) tx.hdel(key, ...dropped);
      tx.lpush(`${this.#prefix}:settings:changes`, JSON.stringify(change));
      tx.ltrim(`${this.#prefix}:settings:changes`, 0, CHANGE_LOG_LENGTH - 1);
      tx.publish(this.#channel, key);
      const replies = await tx.exec();
      const failed = replies?.find(([error]) => error !== null)?.[0];
      if (failed) throw failed;
    });
    this.#invalidate(key);
    // Settings hold no secrets: the values are logged as set, so the log says exactly what changed.
    this.#log.info({ scope, by: `${actor.surface}:${actor.user}`, patch }, 'team settings changed');
    return this.overrides(scope);
  }

  /** Drops every override of a scope (it inherits everything again). */
  async reset(scope: ScopeRef, actor: SettingsActor): Promise<void> {
    const patch = Object.fromEntries(
      Object.keys(teamSettingsSchema.shape).map((k) => [k, null]),
    ) as TeamSettingsPatch;
    await this.update(scope, patch, actor);
  }

  async #read(key: string): Promise<TeamSettings> {
    const raw = await unavailableOnFailure(async () => {
      // Request-path clients queue nothing while connecting: wait for the connection first.
      await this.#connected();
      return this.#client.hgetall(key);
    });
    const settings: Record<string, unknown> = {};
    for (const [field, text] of Object.entries(raw)) {
      const schema = (
        teamSettingsSchema.shape as Record<
          string,
          { unwrap(): { safeParse(v: unknown): { success: boolean; data?: unknown } } }
        >
      )[field];
      let parsed: { success: boolean; data?: unknown } | undefined;
      try {
        parsed = schema?.unwrap().safeParse(JSON.parse(text));
      } catch {
        parsed = undefined;
      }
      // A field this version can't read (written by hand, or by a newer version) is left out, not fatal.
      if (parsed?.success === true) settings[field] = parsed.data;
      else this.#log.warn({ key, field }, 'ignoring an unreadable team setting');
    }
    return settings as TeamSettings;
  }

  /** One wait for the connection shared by every command sent meanwhile (not one listener each). */
  #connected(): Promise<void> {
    if (this.#client.status === 'ready') return Promise.resolve();
    this.#connecting ??= whenConnected(this.#client).finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  #invalidate(key: string): void {
    this.#cache.delete(key);
    this.emit('invalidated', key);
  }

  async close(): Promise<void> {
    this.#subscribed = false;
    this.#cache.clear();
    await Promise.all([closeRedisClient(this.#client), closeRedisClient(this.#subscriber)]);
  }
}

/**
 * The store talks only to Redis, so any failure is Redis's: the caller is told the settings are
 * unavailable for now (503 on the playground), never an internal error, and the cause is kept.
 */
async function unavailableOnFailure<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw new UserError(
      ErrorCode.Unavailable,
      'The team settings cannot be reached right now; try again shortly.',
      {
        cause: error,
        retryAfterSeconds: 5,
      },
    );
  }
}
