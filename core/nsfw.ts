/**
 * The NSFW policy: what happens to an image the safety checker flagged, when it is shown.
 * `block`: replaced by a neutral tile and the user told; `blur`: blurred strongly (a spoiler on
 * Discord); `allow`: shown as is. Pure: the service (bots/service/nsfw.ts) applies it.
 */
export const NSFW_POLICIES = ['block', 'blur', 'allow'] as const;
export type NsfwPolicy = (typeof NSFW_POLICIES)[number];

/** Where an image is shown, as far as the policy cares. */
export interface NsfwPlace {
  /** The surface's name (`discord`, `slack`, `web`). */
  readonly surface: string;
  /** Discord only: the channel is marked age-restricted (NSFW) on Discord. */
  readonly ageRestricted?: boolean;
}

/**
 * The policy that applies in a place, from the team's setting (channel, else workspace; undefined
 * when neither sets one) and the environment's NSFW_POLICY.
 * - Discord: `allow` only in age-restricted channels, where it is also the default; elsewhere an
 *   `allow` (a team's or the environment's) counts as `block`, so removing a channel's age
 *   restriction never leaves flagged images showing.
 * - Slack has no age-restricted channels: `allow` only when an admin set it for the team; the
 *   environment's `allow` counts as `block` there.
 * - The playground is one local team: its setting, else the environment's, applies as is.
 */
export function nsfwPolicyFor(
  place: NsfwPlace,
  team: NsfwPolicy | undefined,
  environment: NsfwPolicy,
): NsfwPolicy {
  switch (place.surface) {
    case 'discord': {
      const restricted = place.ageRestricted === true;
      const policy = team ?? (restricted ? 'allow' : environment);
      return policy === 'allow' && !restricted ? 'block' : policy;
    }
    case 'slack':
      return team ?? (environment === 'allow' ? 'block' : environment);
    default:
      return team ?? environment;
  }
}

/**
 * Why a team may not set `allow` here, or undefined when it may. On Discord, `allow` may be set only
 * for a channel that is age-restricted (a server-wide `allow` would cover channels that are not).
 */
export function nsfwSettingRefusal(
  place: NsfwPlace,
  scope: 'workspace' | 'channel',
  value: NsfwPolicy,
): string | undefined {
  if (value !== 'allow' || place.surface !== 'discord') return undefined;
  if (scope === 'channel' && place.ageRestricted === true) return undefined;
  return (
    'Setting "nsfw" can be "allow" only for a channel marked age-restricted (NSFW) on Discord; ' +
    'use "block" or "blur" here, or set "allow" with scope channel in an age-restricted channel.'
  );
}
