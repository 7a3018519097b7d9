import type { DailyQuota } from './quota.ts';
import type { TeamSettingsStore } from './store.ts';

/** Where team settings live and quotas are counted; absent, only the environment's settings apply. */
export interface TeamSupport {
  readonly store: TeamSettingsStore;
  readonly quota: DailyQuota;
}
