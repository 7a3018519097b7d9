import type { GridRecord } from '../../queue/index.ts';
import type { ControlPress } from '../surface.ts';
import type { ServiceSettings } from './settings.ts';

/**
 * Who may press what: the one place this is decided (the queue cancels whatever it is asked to).
 * Team settings will add per-team admins here.
 */

type Actor = Pick<ControlPress, 'surface' | 'user'>;

/**
 * Every button acts only in the channel its grid was made in (history lists a channel's grids, and U
 * posts in the grid's channel): a forged id can't pull another channel's, or workspace's, grid into
 * this one. Channel ids are unique per surface (Slack Connect shares one id across workspaces).
 */
export function isGridChannel(record: GridRecord, where: Pick<ControlPress, 'surface' | 'channel'>): boolean {
  return record.spec.origin.surface === where.surface && record.spec.origin.channel === where.channel;
}

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
