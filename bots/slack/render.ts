import type { Control, ControlRows, Markup, SurfaceLimits } from '../surface.ts';

/**
 * Slack rendering only: mrkdwn markup, Block Kit buttons, and Slack's size limits. What to show is
 * decided by the service; this turns its views into Slack's wire shapes.
 */

/*
 * Slack's mrkdwn has no escapes for `*`, `_`, `~` or backticks: user text inside mrkdwn can always change
 * the formatting (and `<!channel>`, `<@U…>` or links, unless `&<>` are escaped). So messages are sent as
 * `rich_text` blocks, whose text elements Slack shows exactly as given, with styles and mentions as
 * separate elements. The service writes with this markup; `richText()` turns the result into elements.
 * Markers are private-use characters, removed from user text by `escape`, so a prompt can't forge them.
 */
const OPEN = '\uE000';
const CLOSE = '\uE001';
const MARKERS_RE = /[\uE000\uE001]/gu;

export const SLACK_MARKUP: Markup = {
  bold: (text) => `${OPEN}b${text}${CLOSE}`,
  code: (text) => `${OPEN}c${text}${CLOSE}`,
  mention: (user) => `${OPEN}@${user.replace(MARKERS_RE, '')}${CLOSE}`,
  escape: (text) => text.replace(MARKERS_RE, ''),
};

export type RichTextElement =
  | { readonly type: 'text'; readonly text: string; readonly style?: { bold?: true; code?: true } }
  | { readonly type: 'user'; readonly user_id: string };

export interface SlackRichTextBlock {
  readonly type: 'rich_text';
  readonly block_id?: string;
  readonly elements: readonly [{ readonly type: 'rich_text_section'; readonly elements: RichTextElement[] }];
}

/** Text written with SLACK_MARKUP as rich-text elements: every character of user text literal. */
export function richTextElements(marked: string): RichTextElement[] {
  const elements: RichTextElement[] = [];
  const styles: ('b' | 'c' | '@')[] = [];
  let run = '';
  const flush = () => {
    if (run === '') return;
    const top = styles.at(-1);
    if (top === '@') {
      elements.push({ type: 'user', user_id: run });
    } else {
      const style = {
        ...(styles.includes('b') ? { bold: true as const } : {}),
        ...(top === 'c' ? { code: true as const } : {}),
      };
      elements.push(
        Object.keys(style).length > 0 ? { type: 'text', text: run, style } : { type: 'text', text: run },
      );
    }
    run = '';
  };
  for (let i = 0; i < marked.length; i++) {
    const ch = marked[i]!;
    if (ch === OPEN) {
      flush();
      const kind = marked[i + 1];
      styles.push(kind === 'b' || kind === 'c' || kind === '@' ? kind : 'b');
      i++;
    } else if (ch === CLOSE) {
      flush();
      styles.pop();
    } else {
      run += ch;
    }
  }
  flush();
  return elements;
}

/** mrkdwn escaping as Slack documents it: `&`, `<`, `>` (no links, no mentions, no pings). */
function escapeMrkdwn(text: string): string {
  return text.replace(/&/gu, '&amp;').replace(/</gu, '&lt;').replace(/>/gu, '&gt;');
}

/**
 * The plain `text` Slack shows in notifications and to screen readers where blocks aren't rendered:
 * markers dropped, everything escaped so nothing links or pings; mentions name the user.
 */
export function fallbackText(marked: string): string {
  return richTextElements(marked)
    .map((e) => (e.type === 'user' ? `<@${e.user_id}>` : escapeMrkdwn(e.text)))
    .join('');
}

/** Unformatted text (alt text, titles): markers dropped, mentions as `@id`. */
export function plainText(marked: string): string {
  return richTextElements(marked)
    .map((e) => (e.type === 'user' ? `@${e.user_id}` : e.text))
    .join('');
}

export function richTextBlock(marked: string, blockId?: string): SlackRichTextBlock {
  return {
    type: 'rich_text',
    ...(blockId === undefined ? {} : { block_id: blockId }),
    elements: [{ type: 'rich_text_section', elements: richTextElements(marked) }],
  };
}

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
  if (control.action === 'vary') {
    return `${ACTION_ID_PREFIX}vary_${control.strength ?? 'subtle'}_${control.index + 1}`;
  }
  return control.action === 'refine' || control.action === 'upscale' || control.action === 'upscale2x'
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

export interface SlackActionsBlock {
  readonly type: 'actions';
  readonly block_id: string;
  readonly elements: readonly SlackButton[];
}

export type SlackBlock = SlackRichTextBlock | SlackActionsBlock;

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

/** The text as rich text, then one actions block per row of controls. */
export function messageBlocks(marked: string, controls: ControlRows = []): SlackBlock[] {
  const blocks: SlackBlock[] = [richTextBlock(clip(marked, SECTION_TEXT_MAX), 'imagine_text')];
  controls.forEach((row, i) => {
    if (row.length > 0)
      blocks.push({ type: 'actions', block_id: `imagine_controls_${i}`, elements: row.map(button) });
  });
  return blocks;
}

/** Clips at a character boundary outside markers, closing what is open. */
function clip(marked: string, max: number): string {
  if (marked.length <= max) return marked;
  let open = 0;
  let cut = max - 1;
  while (cut > 0 && marked[cut - 1] === OPEN) cut--;
  for (const ch of marked.slice(0, cut)) {
    if (ch === OPEN) open++;
    else if (ch === CLOSE) open--;
  }
  return `${marked.slice(0, cut)}…${CLOSE.repeat(Math.max(0, open))}`;
}
