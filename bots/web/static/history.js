// The History panel: the user's last grids from `GET /api/history` (the server lists only this
// browser's identity's grids). "Open" shows a grid in the conversation as its card, with its buttons
// (app.js listens for `imagine:open`). Every piece of user text is set as text, never as HTML.

import { bindPanel, el } from './panel.js';

const panel = document.getElementById('history-panel');
const opener = document.getElementById('history-open');
const list = document.getElementById('history-list');
const statusEl = document.getElementById('history-status');

function ago(ms) {
  const minutes = Math.floor(Math.max(0, ms) / 60_000);
  if (minutes < 1) return 'just now';
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.floor(hours / 24)} days ago`;
}

function kindOf(grid) {
  if (grid.kind === 'refine' && grid.parent?.n) return `refine of image ${grid.parent.n}`;
  return grid.kind === 'imagine' ? null : grid.kind;
}

function open(id) {
  document.dispatchEvent(new CustomEvent('imagine:open', { detail: { id } }));
  // The card is in the conversation, under the panel on a phone: make way for it.
  setOpen(false);
}

function entry(grid) {
  const when = grid.requestedAt ?? grid.createdAt;
  const kind = kindOf(grid);
  return el(
    'li',
    { class: 'history-entry', 'data-job': grid.id },
    el('div', { class: 'history-prompt', text: grid.prompt }),
    el(
      'div',
      { class: 'history-meta' },
      el('span', { class: `pill ${grid.status}`, text: grid.status }),
      kind === null ? null : el('span', { text: kind }),
      el('time', {
        datetime: new Date(when).toISOString(),
        title: new Date(when).toLocaleString(),
        text: ago(Date.now() - when),
      }),
      el('span', { class: 'history-seeds', text: `seeds ${grid.seeds.join(', ')}` }),
    ),
    el('button', {
      type: 'button',
      class: 'btn history-open',
      text: grid.status === 'done' ? 'Open with buttons' : 'Open',
      onclick: () => open(grid.id),
    }),
  );
}

async function load() {
  statusEl.textContent = 'Loading…';
  list.replaceChildren();
  let response;
  let data = null;
  try {
    response = await fetch('/api/history', {
      headers: { accept: 'application/json' },
      credentials: 'same-origin',
    });
    data = await response.json().catch(() => null);
  } catch {
    statusEl.textContent = 'The playground server is not reachable.';
    return;
  }
  if (!response.ok) {
    statusEl.textContent = data?.error?.message ?? `Could not load your history (HTTP ${response.status}).`;
    return;
  }
  const grids = Array.isArray(data?.grids) ? data.grids : [];
  statusEl.textContent =
    grids.length === 0
      ? 'No grids yet, or they have expired.'
      : `${grids.length} grid${grids.length === 1 ? '' : 's'}`;
  list.replaceChildren(...grids.map(entry));
}

const setOpen = bindPanel(panel, opener, () => void load());
