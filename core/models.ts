import { ErrorCode, UserError } from './errors.ts';

/**
 * The models a deployment serves, by name. Names are what users type (`--model NAME`), what job
 * specs and records keep, and what routes a job to a worker (one queue per name), so they are short,
 * stable and safe in Redis keys, BullMQ queue names and Discord choices.
 */

/** Name of the one model of a deployment that sets MODEL_DIR (or nothing: the demo model) instead of MODELS. */
export const DEFAULT_MODEL_NAME = 'default';

/** 1-32 of lowercase letters, digits, `_`, `.`, `-`, starting with a letter or digit. */
export const MODEL_NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,31}$/u;

/** A served model: its name, and its folder (undefined: the built-in demo model). */
export interface ModelEntry {
  readonly name: string;
  readonly dir: string | undefined;
}

/** Discord allows 25 choices per option; more models than that could not all be offered there. */
export const MAX_MODELS = 25;

/**
 * Parses `name=folder,name=folder` (MODELS). Returns the entries in order (the first is the default)
 * or why the text is not such a list.
 */
export function parseModelList(
  text: string,
): { ok: true; value: ModelEntry[] } | { ok: false; error: string } {
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (items.length === 0) return { ok: false, error: 'must list at least one name=folder' };
  if (items.length > MAX_MODELS) {
    return { ok: false, error: `lists ${items.length} models; at most ${MAX_MODELS} are allowed` };
  }
  const entries: ModelEntry[] = [];
  for (const item of items) {
    const at = item.indexOf('=');
    const name = at < 0 ? '' : item.slice(0, at).trim();
    const dir = at < 0 ? '' : item.slice(at + 1).trim();
    if (at < 0 || dir === '') {
      return { ok: false, error: `each entry must be name=folder, got "${item}"` };
    }
    if (!MODEL_NAME_RE.test(name)) {
      return {
        ok: false,
        error: `model name "${name}" must be 1-32 lowercase letters, digits, _ . - (starting with a letter or digit)`,
      };
    }
    if (entries.some((e) => e.name === name))
      return { ok: false, error: `model name "${name}" is listed twice` };
    entries.push({ name, dir });
  }
  return { ok: true, value: entries };
}

/** A `--model` value that names no served model: say which ones there are. */
export function unknownModelError(given: string, served: readonly string[]): UserError {
  return new UserError(
    ErrorCode.UnknownModel,
    `Unknown model \`${given}\`. This deployment serves: ${served.join(', ')} (the first is the default).`,
    { context: { given } },
  );
}

/** A grid made with a model that is no longer served: its buttons can't make the same pictures. */
export function modelGoneError(name: string, served: readonly string[]): UserError {
  return new UserError(
    ErrorCode.ModelGone,
    `This grid was made with the model \`${name}\`, which this deployment no longer serves, so its buttons ` +
      `can't make matching images. Run /imagine again (models now: ${served.join(', ')}).`,
    { context: { model: name } },
  );
}

/** A grid made with another revision of a model (its files changed): the same seeds give other pictures. */
export function modelRevisionError(name: string, revision: string, now: string): UserError {
  return new UserError(
    ErrorCode.ModelGone,
    `This grid was made with revision ${revision} of the model \`${name}\`; its files have changed since ` +
      `(now ${now}), so the same seeds would give other pictures. Run /imagine again.`,
    { context: { model: name, revision, now } },
  );
}
