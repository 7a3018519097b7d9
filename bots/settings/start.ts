import type { RedisConnection } from '../../queue/index.ts';
import type { ServiceLog, ServiceSettings } from '../service/settings.ts';
import { globalSettingsOf } from '../service/team.ts';
import { DailyQuota } from './quota.ts';
import { TeamSettingsStore } from './store.ts';
import type { TeamSupport } from './support.ts';

/**
 * The team-settings store and the quota counter of one bot process, subscribed to changes. The
 * subscription is not awaited: until it is up the store reads Redis on every command (no stale cache),
 * so a slow Redis at start delays nothing.
 */
export async function startTeamSettings(
  connection: RedisConnection,
  prefix: string,
  settings: ServiceSettings,
  log: ServiceLog & { child(bindings: object): ServiceLog },
): Promise<TeamSupport & { close(): Promise<void> }> {
  const store = new TeamSettingsStore({
    connection,
    prefix,
    global: globalSettingsOf(settings),
    log: log.child({ component: 'team-settings' }),
  });
  store.start().catch((error: unknown) => log.warn({ err: error }, 'team settings: subscribing failed'));
  const quota = new DailyQuota({ connection, prefix });
  return {
    store,
    quota,
    close: async () => {
      await Promise.all([store.close(), quota.close()]);
    },
  };
}
