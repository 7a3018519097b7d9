import { describe, expect, it } from 'vitest';
import { DISCORD_MARKUP } from '../../bots/discord/render.ts';
import {
  cancelledText,
  failureText,
  gridText,
  imageText,
  progressText,
  queuedText,
} from '../../bots/service/format.ts';
import { richTextElements, SLACK_MARKUP } from '../../bots/slack/render.ts';
import type { Markup } from '../../bots/surface.ts';
import { liveMarkdown, shownContent } from '../fakes/discord/payloads.ts';

/*
 * Every text the service builds, with hostile user text in every slot that takes some (prompt,
 * negative prompt, a user-facing failure reason that quotes input): each surface's one escape must
 * reach all of them. The end-to-end tests (discord*.test.ts, slack.test.ts) cover the wire.
 */
const HOSTILE =
  '[Download full size](https://evil.example/x) **b** _i_ ~s~ `c` # h > q -# t @everyone <@222> <!channel> https://evil.example';
const OWNER = '111111111111111111';

function everyText(m: Markup): string[] {
  const settings = {
    negative: HOSTILE,
    sampler: 'pndm',
    steps: 2,
    guidance: 7.5,
    width: 64,
    height: 64,
  } as const;
  const image = { index: 0, prompt: HOSTILE, seed: 5, truncatedTokens: 0 };
  return [
    queuedText(m, 4000, {
      user: OWNER,
      prompt: HOSTILE,
      jobKind: 'imagine',
      seeds: [5],
      position: 0,
      warnings: [],
    }),
    progressText(m, 4000, { user: OWNER, prompt: HOSTILE, step: 1, total: 2, percent: 50 }),
    gridText(m, 4000, { owner: OWNER, jobKind: 'imagine', images: [image], settings, notes: [] }),
    // Different prompts per image: the per-image lines.
    gridText(m, 4000, {
      owner: OWNER,
      jobKind: 'refine',
      parentIndex: 0,
      images: [image, { ...image, index: 1, prompt: `${HOSTILE}, x` }],
      settings,
      notes: [],
    }),
    imageText(m, 4000, { user: OWNER, index: 0, seed: 5, prompt: HOSTILE }),
    failureText(m, 4000, { owner: OWNER, prompt: HOSTILE, reason: `Unknown sampler \`${HOSTILE}\`.` }),
    cancelledText(m, 4000, { owner: OWNER, prompt: HOSTILE, by: m.mention(OWNER) }),
  ];
}

describe('user text in every message the service writes', () => {
  it('Discord: shown exactly as typed, none of it live markdown', () => {
    for (const text of everyText(DISCORD_MARKUP)) {
      expect(shownContent(text)).toContain(HOSTILE);
      const live = liveMarkdown(text);
      // The bot's own markup only: bold around the prompt, the owner's mention, seeds in code.
      expect(live.replace(/<@\d+>|`\d+`|\*\*/gu, '')).not.toMatch(
        /\]\(|https?:|@everyone|<[@!#]|^#|-#|^>|`|~|\b_|\*/mu,
      );
      expect(new Set(live.match(/<@\d+>/gu))).toEqual(new Set([`<@${OWNER}>`]));
    }
  });

  it('Slack: user text is only ever a plain rich-text element, the owner the only user mentioned', () => {
    for (const text of everyText(SLACK_MARKUP)) {
      const elements = richTextElements(text);
      for (const e of elements) if (e.type === 'user') expect(e.user_id).toBe(OWNER);
      // The hostile text sits inside text elements verbatim (never split into styles or mentions).
      const shown = elements.map((e) => (e.type === 'text' ? e.text : `@${e.user_id}`)).join('');
      expect(shown).toContain(HOSTILE);
      for (const e of elements) {
        if (e.type === 'text' && e.text.includes('evil')) expect(e.style?.code).toBeUndefined();
      }
    }
  });
});
