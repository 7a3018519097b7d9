// The Settings panel: the playground team's settings from `GET /api/settings`, changed with
// `PUT /api/settings` (only the fields that changed; an emptied field goes back to the default with
// `null`). The server's 400 message is shown under the field it names. User text is set as text or
// as input values, never as HTML.

import { bindPanel, el } from './panel.js';

const panel = document.getElementById('settings-panel');
const opener = document.getElementById('settings-open');
const form = document.getElementById('settings-form');
const statusEl = document.getElementById('settings-status');

const MAX_SUFFIXES = 4;

/** key → how it is edited. `list`: the suffix list; `words`: comma- or line-separated words. */
const FIELDS = [
  {
    key: 'suffixes',
    label: 'Refine suffixes',
    kind: 'list',
    hint: '1 to 4; buttons 1–4 make one image per suffix.',
  },
  { key: 'negative', label: 'Default negative prompt', kind: 'text' },
  { key: 'model', label: 'Default model', kind: 'text' },
  { key: 'sampler', label: 'Default sampler', kind: 'select', options: [] },
  { key: 'steps', label: 'Default steps', kind: 'number' },
  { key: 'guidance', label: 'Default guidance (CFG)', kind: 'number' },
  { key: 'aspect', label: 'Default aspect ratio', kind: 'text', hint: 'Like 3:2.' },
  { key: 'ownerOnlyButtons', label: 'Only the requester may press a grid’s buttons', kind: 'bool' },
  { key: 'bannedWords', label: 'Banned words', kind: 'words', hint: 'Separated by commas or new lines.' },
  { key: 'nsfw', label: 'Flagged images (NSFW policy)', kind: 'select', options: ['block', 'blur', 'allow'] },
  { key: 'dailyQuota', label: 'Images per user per day', kind: 'number', hint: '0 = no quota.' },
  {
    key: 'admins',
    label: 'Admins',
    kind: 'words',
    hint: 'Ids like web:… or slack:U123, separated by commas.',
  },
];

/** The last answer: `{settings, effective}`; and the suffix list as first shown. */
let state = null;
let shownSuffixes = [];
let suffixesToDefault = false;

function shown(value) {
  if (value === undefined || value === null || value === '') return 'none';
  if (Array.isArray(value))
    return value.length === 0 ? 'none' : value.map((v) => JSON.stringify(v)).join(', ');
  return String(value);
}

async function call(method, body) {
  try {
    const response = await fetch('/api/settings', {
      method,
      headers: {
        accept: 'application/json',
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
    });
    const data = await response.json().catch(() => null);
    return { ok: response.ok, status: response.status, data };
  } catch {
    return { ok: false, status: 0, data: { error: { message: 'The playground server is not reachable.' } } };
  }
}

// ——— the form ———

function suffixRow(value) {
  const row = el(
    'div',
    { class: 'suffix-row' },
    el('input', {
      type: 'text',
      class: 'suffix-input',
      value,
      maxlength: '200',
      'aria-label': 'Suffix',
      spellcheck: 'false',
    }),
    el('button', {
      type: 'button',
      class: 'ghost',
      text: 'Remove',
      'aria-label': 'Remove this suffix',
      onclick: () => {
        row.remove();
        syncSuffixButtons();
      },
    }),
  );
  return row;
}

function syncSuffixButtons() {
  const rows = form.querySelectorAll('.suffix-row');
  const add = form.querySelector('#settings-suffix-add');
  if (add) add.disabled = rows.length >= MAX_SUFFIXES;
}

function control(field, own, effective) {
  const id = `setting-${field.key}`;
  const placeholder = `default: ${shown(effective)}`;
  switch (field.kind) {
    case 'list': {
      const list = el('div', { id, class: 'suffix-list' }, ...shownSuffixes.map(suffixRow));
      return el(
        'div',
        { class: 'suffix-editor' },
        list,
        el(
          'div',
          { class: 'suffix-actions' },
          el('button', {
            type: 'button',
            id: 'settings-suffix-add',
            class: 'ghost',
            text: 'Add suffix',
            onclick: () => {
              list.append(suffixRow(''));
              syncSuffixButtons();
              list.lastElementChild?.querySelector('input')?.focus();
            },
          }),
          own === undefined
            ? null
            : el('button', {
                type: 'button',
                class: 'ghost',
                text: 'Use the default',
                onclick: () => {
                  suffixesToDefault = true;
                  shownSuffixes = [...(state?.defaults?.suffixes ?? [])];
                  list.replaceChildren(...shownSuffixes.map(suffixRow));
                  syncSuffixButtons();
                },
              }),
        ),
      );
    }
    case 'select':
    case 'bool': {
      const options = field.kind === 'bool' ? ['true', 'false'] : field.options;
      return el(
        'select',
        { id, name: field.key },
        el('option', { value: '', text: placeholder }),
        ...options.map((o) =>
          el('option', { value: o, text: o, selected: own !== undefined && String(own) === o }),
        ),
      );
    }
    case 'words':
      return el('textarea', {
        id,
        name: field.key,
        rows: '2',
        placeholder,
        value: Array.isArray(own) ? own.join(', ') : '',
      });
    default:
      return el('input', {
        id,
        name: field.key,
        type: 'text',
        inputmode: field.kind === 'number' ? 'decimal' : undefined,
        placeholder,
        value: own === undefined ? '' : String(own),
        spellcheck: 'false',
      });
  }
}

function render() {
  const { settings, effective } = state;
  shownSuffixes = [...(settings.suffixes ?? effective.suffixes ?? [])];
  suffixesToDefault = false;
  form.replaceChildren(
    ...FIELDS.map((field) => {
      const own = settings[field.key];
      const hint = [field.hint, own === undefined ? null : 'Set for this team.'].filter(Boolean).join(' ');
      return el(
        'div',
        { class: 'field', 'data-field': field.key },
        el('label', { for: `setting-${field.key}`, text: field.label }),
        control(field, own, effective[field.key]),
        hint === '' ? null : el('p', { class: 'field-hint', text: hint }),
        el('p', { class: 'field-error', id: `setting-${field.key}-error`, role: 'alert', hidden: true }),
      );
    }),
    el(
      'div',
      { class: 'settings-actions' },
      el('button', { type: 'submit', class: 'btn primary', text: 'Save' }),
    ),
  );
  syncSuffixButtons();
}

/** A field's value as typed: null means "inherit"; numbers that don't parse go as typed (the server says why). */
function fieldValue(field) {
  const input = form.querySelector(`#setting-${field.key}`);
  if (field.kind === 'list') return [...input.querySelectorAll('.suffix-input')].map((i) => i.value);
  const raw = input.value;
  if (field.kind === 'words') {
    const words = raw
      .split(/[\n,]/u)
      .map((w) => w.trim())
      .filter((w) => w !== '');
    return words.length === 0 ? null : words;
  }
  if (raw.trim() === '') return null;
  if (field.kind === 'bool') return raw === 'true';
  if (field.kind === 'number') return /^-?\d+(\.\d+)?$/u.test(raw.trim()) ? Number(raw.trim()) : raw;
  return raw;
}

function patchOf() {
  const patch = {};
  for (const field of FIELDS) {
    const value = fieldValue(field);
    if (field.kind === 'list') {
      if (suffixesToDefault && JSON.stringify(value) === JSON.stringify(shownSuffixes)) patch.suffixes = null;
      else if (
        JSON.stringify(value) !== JSON.stringify(state.settings.suffixes ?? state.effective.suffixes ?? [])
      )
        patch.suffixes = value;
      continue;
    }
    const before = state.settings[field.key] ?? null;
    if (JSON.stringify(value) !== JSON.stringify(before)) patch[field.key] = value;
  }
  return patch;
}

function clearErrors() {
  for (const error of form.querySelectorAll('.field-error')) {
    error.hidden = true;
    error.textContent = '';
  }
  for (const bad of form.querySelectorAll('[aria-invalid]')) bad.removeAttribute('aria-invalid');
}

/** The server names the field first: `Setting "steps" must be…`, `Setting "suffixes.1" …`, `Unknown setting "x"`. */
function showError(message) {
  const key = /[Ss]etting "([A-Za-z]+)/u.exec(message)?.[1];
  const error = key === undefined ? null : form.querySelector(`#setting-${key}-error`);
  if (error === null) {
    statusEl.textContent = message;
    return;
  }
  error.textContent = message;
  error.hidden = false;
  const input = form.querySelector(`#setting-${key}`);
  input?.setAttribute('aria-invalid', 'true');
  error.scrollIntoView({ block: 'nearest' });
  statusEl.textContent = 'Not saved: see the field marked below.';
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (state === null) return;
  clearErrors();
  const patch = patchOf();
  if (Object.keys(patch).length === 0) {
    statusEl.textContent = 'Nothing changed.';
    return;
  }
  statusEl.textContent = 'Saving…';
  const result = await call('PUT', patch);
  if (result.ok) {
    state = { ...state, ...result.data };
    render();
    statusEl.textContent = 'Saved. The next command uses these settings.';
  } else {
    showError(result.data?.error?.message ?? `Not saved (HTTP ${result.status}).`);
  }
});

async function load() {
  statusEl.textContent = 'Loading…';
  const [settings, info] = await Promise.all([
    call('GET'),
    fetch('/api/info', { headers: { accept: 'application/json' } })
      .then((r) => r.json())
      .catch(() => null),
  ]);
  if (!settings.ok) {
    form.replaceChildren();
    statusEl.textContent =
      settings.data?.error?.message ?? `Could not load the settings (HTTP ${settings.status}).`;
    return;
  }
  const samplers = Array.isArray(info?.samplers) ? info.samplers : [];
  FIELDS.find((f) => f.key === 'sampler').options = samplers;
  state = { ...settings.data, defaults: { suffixes: Array.isArray(info?.suffixes) ? info.suffixes : [] } };
  render();
  statusEl.textContent = '';
}

bindPanel(panel, opener, () => void load());
