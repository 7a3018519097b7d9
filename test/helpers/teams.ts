import { globalSettingsOf } from '../../bots/service/team.ts';
import type { ServiceSettings } from '../../bots/service.ts';
import { DailyQuota } from '../../bots/settings/quota.ts';
import { TeamSettingsStore } from '../../bots/settings/store.ts';

/**
 * Real team settings and daily quotas on Redis under `prefix`, with the deployment's settings as the
 * global layer and a silent log: what a chat end-to-end test hands the service as `teams`. The caller
 * closes both.
 */
export async function startTeamSupport(
  redisUrl: string,
  prefix: string,
  settings: ServiceSettings,
): Promise<{ store: TeamSettingsStore; quota: DailyQuota }> {
  const store = new TeamSettingsStore({
    connection: redisUrl,
    prefix,
    global: globalSettingsOf(settings),
    log: { debug() {}, info() {}, warn() {}, error() {} },
  });
  await store.start();
  const quota = new DailyQuota({ connection: redisUrl, prefix });
  return { store, quota };
}
