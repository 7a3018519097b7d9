import type { ServiceSettings } from '../../bots/service.ts';
import { DEFAULT_SUFFIXES } from '../../core/config.ts';

/**
 * The service settings the FakeJobs service tests start from: the built-in limits (no DEFAULT_* in the
 * environment), no admins, 30-day records. A test spreads it and names only what it changes.
 */
export const SERVICE_SETTINGS: ServiceSettings = {
  limits: {
    defaultSteps: 25,
    maxSteps: 50,
    defaultGuidance: 7.5,
    defaultSampler: 'pndm',
    defaultWidth: 512,
    defaultHeight: 512,
    maxPixels: 768 * 768,
  },
  suffixes: [...DEFAULT_SUFFIXES],
  ownerOnlyButtons: false,
  adminUsers: [],
  recordTtlDays: 30,
};
