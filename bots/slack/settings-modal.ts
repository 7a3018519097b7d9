import type { App, SlashCommand, ViewSubmitAction, webApi } from '@slack/bolt';
import { TEAM_SETTING_KEYS, type TeamSettingKey, type TeamSettings } from '../../core/team-settings.ts';
import type { Logger } from '../logger.ts';
import type { SettingsAnswer, SettingsRequest } from '../service/settings-command.ts';

/**
 * Slack `/imagine-settings [workspace]`: a Block Kit modal with one input per setting, prefilled with
 * what the scope (this channel, or the workspace with `workspace`) sets itself; an empty input means
 * "inherit". Workspace admins and owners (users.info) may change settings, and people an admin listed;
 * the service decides, from what the adapter tells it. Everyone else is told why, privately.
 */

export const SETTINGS_CALLBACK_ID = 'imagine_settings';

export type SettingsHandler = (request: SettingsRequest) => Promise<SettingsAnswer>;

interface Meta {
  readonly scope: 'workspace' | 'channel';
  readonly workspace: string;
  readonly channel: string;
}

const LABELS: Readonly<Record<TeamSettingKey, { label: string; hint: string; multiline?: boolean }>> = {
  suffixes: { label: 'Refine suffixes', hint: '1 to 4, one per line', multiline: true },
  negative: { label: 'Default negative prompt', hint: 'Used when the prompt has no --no' },
  sampler: { label: 'Default sampler', hint: 'pndm, ddim, euler, euler_a, dpmpp_2m, dpmpp_2m_karras, lcm' },
  steps: { label: 'Default steps', hint: 'A whole number' },
  guidance: { label: 'Default guidance (CFG)', hint: '0 to 30' },
  aspect: { label: 'Default aspect ratio', hint: 'Like 3:2' },
  model: { label: 'Default model', hint: 'A model name' },
  ownerOnlyButtons: { label: 'Only the requester may press buttons', hint: 'true or false' },
  bannedWords: { label: 'Banned words', hint: 'One per line, or separated by commas', multiline: true },
  dailyQuota: { label: 'Daily images per user', hint: '0 = no quota' },
  admins: { label: 'Bot admins', hint: 'Slack user ids (U…), one per line', multiline: true },
  nsfw: {
    label: 'Images the safety checker flags',
    hint: 'block (replaced), blur or allow; empty: the default (allow only when set here)',
  },
};

/** A scope's value as the input's text ('' = not set here). */
function textOf(key: TeamSettingKey, settings: TeamSettings): string {
  const value = settings[key];
  if (value === undefined) return '';
  if (key === 'admins') return (value as string[]).map((a) => a.replace(/^slack:/u, '')).join('\n');
  if (Array.isArray(value)) return value.join('\n');
  return String(value);
}

export function settingsModal(meta: Meta, settings: TeamSettings): webApi.ModalView {
  return {
    type: 'modal',
    callback_id: SETTINGS_CALLBACK_ID,
    private_metadata: JSON.stringify(meta),
    title: { type: 'plain_text', text: 'Imagine settings' },
    submit: { type: 'plain_text', text: 'Save' },
    close: { type: 'plain_text', text: 'Cancel' },
    blocks: [
      {
        type: 'context',
        elements: [
          {
            type: 'plain_text',
            text:
              meta.scope === 'workspace'
                ? 'Settings for the whole workspace. Empty fields use the defaults.'
                : 'Settings for this channel. Empty fields use the workspace settings.',
          },
        ],
      },
      ...TEAM_SETTING_KEYS.map((key) => {
        const text = textOf(key, settings);
        return {
          type: 'input' as const,
          block_id: key,
          optional: true,
          label: { type: 'plain_text' as const, text: LABELS[key].label },
          hint: { type: 'plain_text' as const, text: LABELS[key].hint },
          element: {
            type: 'plain_text_input' as const,
            action_id: 'value',
            multiline: LABELS[key].multiline === true,
            ...(text === '' ? {} : { initial_value: text }),
          },
        };
      }),
    ],
  };
}

function lines(text: string, separators: RegExp): string[] {
  return text
    .split(separators)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** The modal's inputs as a patch: empty = drop (inherit); the service validates the rest. */
export function patchFromView(values: ViewSubmitAction['view']['state']['values']): Record<string, unknown> {
  const patch: Record<string, unknown> = {};
  for (const key of TEAM_SETTING_KEYS) {
    const raw = values[key]?.value?.value;
    const text = typeof raw === 'string' ? raw.trim() : '';
    if (text === '') {
      patch[key] = null;
      continue;
    }
    switch (key) {
      case 'suffixes':
        // Suffixes keep their leading ", " and spaces: one per line, as typed.
        patch[key] = String(raw)
          .split('\n')
          .filter((s) => s.trim().length > 0);
        break;
      case 'bannedWords':
        patch[key] = lines(text, /[\n,]/u);
        break;
      case 'admins':
        patch[key] = lines(text, /[\s,]+/u).map((id) => `slack:${id.replace(/^<@|>$/gu, '')}`);
        break;
      case 'steps':
      case 'guidance':
      case 'dailyQuota': {
        const n = Number(text);
        patch[key] = Number.isFinite(n) ? n : text;
        break;
      }
      case 'ownerOnlyButtons':
        patch[key] = text === 'true' ? true : text === 'false' ? false : text;
        break;
      default:
        patch[key] = text;
    }
  }
  return patch;
}

/** Workspace admins and owners, as users.info says. */
async function isWorkspaceAdmin(client: webApi.WebClient, user: string, log: Logger): Promise<boolean> {
  try {
    const info = await client.users.info({ user });
    return (
      info.user?.is_admin === true || info.user?.is_owner === true || info.user?.is_primary_owner === true
    );
  } catch (error) {
    log.warn({ err: error, user }, 'users.info failed: treating the user as not an admin');
    return false;
  }
}

export function registerSettings(
  app: App,
  options: { readonly command: string; readonly handler: SettingsHandler; readonly log: Logger },
): void {
  const { handler, log } = options;
  app.command(options.command, async ({ ack, command, client, respond }) => {
    await ack();
    await openModal(command, client, handler, log).then(
      (refusal) =>
        refusal === undefined ? undefined : respond({ response_type: 'ephemeral', text: refusal }),
      (error: unknown) => {
        log.warn({ err: error }, 'opening the settings modal failed');
        return respond({
          response_type: 'ephemeral',
          text: 'The settings could not be opened right now; please try again.',
        });
      },
    );
  });
  app.view<ViewSubmitAction>(SETTINGS_CALLBACK_ID, async ({ ack, body, view, client }) => {
    let meta: Meta;
    try {
      meta = JSON.parse(view.private_metadata) as Meta;
    } catch {
      await ack({
        response_action: 'errors',
        errors: { suffixes: 'This form is out of date; open it again.' },
      });
      return;
    }
    const answer = await handler({
      surface: 'slack',
      user: body.user.id,
      workspace: meta.workspace,
      channel: meta.channel,
      scope: meta.scope,
      platformAdmin: await isWorkspaceAdmin(client, body.user.id, log),
      action: { kind: 'set', patch: patchFromView(view.state.values) },
    }).catch(
      (): SettingsAnswer => ({ ok: false, message: 'The settings could not be saved right now; try again.' }),
    );
    if (answer.ok) {
      await ack();
      return;
    }
    // Shown under the input it is about ("Setting "steps" must be…"), else under the first one.
    const field = /"([A-Za-z]+)/u.exec(answer.message)?.[1];
    const block = TEAM_SETTING_KEYS.includes(field as TeamSettingKey) ? (field as string) : 'suffixes';
    await ack({ response_action: 'errors', errors: { [block]: answer.message } });
  });
}

/** Opens the modal for someone who may change the scope; else returns the refusal to show. */
async function openModal(
  command: SlashCommand,
  client: webApi.WebClient,
  handler: SettingsHandler,
  log: Logger,
): Promise<string | undefined> {
  const scope = command.text.trim().toLowerCase() === 'workspace' ? 'workspace' : 'channel';
  const meta: Meta = { scope, workspace: command.team_id, channel: command.channel_id };
  const answer = await handler({
    surface: 'slack',
    user: command.user_id,
    workspace: meta.workspace,
    channel: meta.channel,
    scope,
    platformAdmin: await isWorkspaceAdmin(client, command.user_id, log),
    action: { kind: 'show' },
  });
  if (!answer.ok) return answer.message;
  if (!answer.mayChange) {
    return `You can't change the bot's ${scope === 'workspace' ? 'workspace' : 'channel'} settings: that needs a workspace admin or owner, or to be listed as a bot admin by one.`;
  }
  await client.views.open({ trigger_id: command.trigger_id, view: settingsModal(meta, answer.settings) });
  return undefined;
}
