import type { SlashCommand } from '@slack/bolt';
import { UserError } from '../../core/errors.ts';
import type { Logger } from '../logger.ts';
import type { HistoryHandler, HistoryView } from '../service/history.ts';
import { actionIdOf, richTextBlock, SLACK_MARKUP, type SlackBlock } from './render.ts';
import type { ReplyContext, SlackWebApi } from './web-api.ts';

/**
 * `/imagine history` on Slack: one ephemeral message (only the requester sees it) listing their last
 * grids in the channel, each line followed by that grid's buttons. Slack can't show a file privately
 * (an upload is shared with the channel), so the list has no pictures; U1–U4 post an image as usual.
 */

/** Block Kit for the history: heading, then per grid its line and its rows of buttons. */
export function historyBlocks(view: HistoryView): SlackBlock[] {
  const blocks: SlackBlock[] = [richTextBlock(view.text, 'imagine_history')];
  view.entries.forEach((entry, i) => {
    blocks.push(richTextBlock(entry.text, `imagine_history_${i}`));
    entry.controls.forEach((row, r) => {
      if (row.length === 0) return;
      blocks.push({
        type: 'actions',
        block_id: `imagine_history_${i}_controls_${r}`,
        // action_ids must be unique in a message: the entry's number makes them so (the value is the button).
        elements: row.map((control) => {
          const style = control.style === 'secondary' ? {} : { style: control.style };
          return {
            type: 'button' as const,
            action_id: `${actionIdOf(control)}_h${i}`,
            text: { type: 'plain_text' as const, text: control.label, emoji: true as const },
            value: control.id,
            ...style,
          };
        }),
      });
    });
  });
  return blocks;
}

export async function onHistoryCommand(
  command: SlashCommand,
  handler: HistoryHandler | undefined,
  api: SlackWebApi,
  log: Logger,
): Promise<void> {
  const context: ReplyContext = {
    channel: command.channel_id,
    user: command.user_id,
    responseUrl: command.response_url,
  };
  if (handler === undefined) {
    await api.ephemeral(context, 'History is not enabled on this deployment.');
    return;
  }
  let view: HistoryView;
  try {
    view = await handler(
      { surface: 'slack', user: command.user_id, workspace: command.team_id, channel: command.channel_id },
      SLACK_MARKUP,
    );
  } catch (error) {
    log.warn({ err: error }, 'reading the history failed');
    await api.ephemeral(
      context,
      error instanceof UserError
        ? error.message
        : 'Your history cannot be read right now; try again shortly.',
    );
    return;
  }
  await api.ephemeralBlocks(context, view.text, historyBlocks(view));
}
