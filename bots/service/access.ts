import type { GridRecord } from '../../queue/index.ts';
import type { ControlPress } from '../surface.ts';
import type { ServiceSettings } from './settings.ts';

/**
 * Who may press what: the one place this is decided (the queue cancels whatever it is asked to).
 * Team settings will add per-team admins here.
 */

type Actor = Pick<ControlPress, 'surface' | 'user'>;

function isOwner(record: GridRecord, actor: Actor): boolean {
  // The same user id on another surface is another person.
  return record.spec.origin.surface === actor.surface && record.spec.origin.user === actor.user;
}

export function isAdmin(settings: ServiceSettings, actor: Actor): boolean {
  return settings.adminUsers.includes(`${actor.surface}:${actor.user}`);
}

/** Cancel: the requester or an admin. */
export function mayCancel(settings: ServiceSettings, record: GridRecord, actor: Actor): boolean {
  return isOwner(record, actor) || isAdmin(settings, actor);
}

/** Refine, reroll, full size, vary, upscale ×2: anyone in the channel, or only the requester with OWNER_ONLY_BUTTONS. */
export function mayUseGrid(settings: ServiceSettings, record: GridRecord, actor: Actor): boolean {
  return !settings.ownerOnlyButtons || isOwner(record, actor);
}
