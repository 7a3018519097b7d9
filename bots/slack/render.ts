import type { Control, ControlRows, Markup, SurfaceLimits } from '../surface.ts';

/**
 * Slack rendering only: mrkdwn markup, Block Kit buttons, and Slack's size limits. What to show is
 * decided by the service; this turns its views into Slack's wire shapes.
 */

/** Slack mrkdwn. User text is escaped the way Slack documents: `&`, `<`, `>` only. */
export const SLACK_MARKUP: Markup = {
  bold: (text) => `*${text}*`,
  code: (text) => `\`${text}\``,
  mention: (user) => `<@${user}>`,
  escape: (text) => text.replace(/&/gu, '&amp;').replace(/</gu, '&lt;').replace(/>/gu, '&gt;'),
};

/** A section block's text holds at most 3000 characters. */
export const SECTION_TEXT_MAX = 3000;

export const SLACK_LIMITS: SurfaceLimits = {
  // Slack accepts files up to 1 GB; keep uploads modest so a slow workspace link still copes.
  maxUploadBytes: 50 * 1024 * 1024,
  maxTextLength: SECTION_TEXT_MAX,
  // A posted file can't be swapped by chat.update, so progress stays text-only.
  progressPreviews: false,
};

/** Prefix of every action_id this app renders; the bolt listener matches it. */
export const ACTION_ID_PREFIX = 'imagine_';

/**
 * `imagine_refine_1`…`imagine_refine_4`, `imagine_upscale_1`…, `imagine_reroll`, `imagine_cancel`.
 * action_ids must be unique within a message; the service reads only the button's value.
 */
export function actionIdOf(control: Control): string {
  return control.action === 'refine' || control.action === 'upscale'
    ? `${ACTION_ID_PREFIX}${control.action}_${control.index + 1}`
    : `${ACTION_ID_PREFIX}${control.action}`;
}

export interface SlackButton {
  readonly type: 'button';
  readonly action_id: string;
  readonly text: { readonly type: 'plain_text'; readonly text: string; readonly emoji: true };
  readonly value: string;
  readonly style?: 'primary' | 'danger';
}

export interface SlackSectionBlock {
  readonly type: 'section';
  readonly block_id?: string;
  readonly text: { readonly type: 'mrkdwn'; readonly text: string };
}

export interface SlackActionsBlock {
  readonly type: 'actions';
  readonly block_id: string;
  readonly elements: readonly SlackButton[];
}

export type SlackBlock = SlackSectionBlock | SlackActionsBlock;

export function button(control: Control): SlackButton {
  const base = {
    type: 'button' as const,
    action_id: actionIdOf(control),
    text: { type: 'plain_text' as const, text: control.label, emoji: true as const },
    value: control.id,
  };
  // Slack has no "secondary" style: the default look is it.
  return control.style === 'secondary' ? base : { ...base, style: control.style };
}

/** One section with the text, then one actions block per row of controls. */
export function messageBlocks(text: string, controls: ControlRows = []): SlackBlock[] {
  const blocks: SlackBlock[] = [
    {
      type: 'section',
      block_id: 'imagine_text',
      text: { type: 'mrkdwn', text: clip(text, SECTION_TEXT_MAX) },
    },
  ];
  controls.forEach((row, i) => {
    if (row.length > 0)
      blocks.push({ type: 'actions', block_id: `imagine_controls_${i}`, elements: row.map(button) });
  });
  return blocks;
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
