// Vary and Upscale ×2 on the playground, as on the chat surfaces: under a finished grid a row V1–V4
// (Vary (Subtle) of image n); under a full-size image (U1–U4) Vary (Subtle), Vary (Strong) and
// Upscale ×2. app.js draws the cards; this adds the rows to them whenever they are (re)drawn, and shows
// the jobs the presses make through app.js's own job cards.

import { api, errorMessage, errorText, openJob } from './app.js';

const logEl = document.getElementById('log');
/** Presses done (`id:action:n:strength`), so a redrawn card keeps showing them as used. */
const used = new Set();
const pending = new Set();

function pressButton(id, n, action, strength, label, title, style) {
  const key = `${id}:${action}:${n}:${strength ?? ''}`;
  const button = document.createElement('button');
  button.type = 'button';
  button.className = `btn ${style ?? ''} ${used.has(key) ? 'used' : ''}`.trim();
  button.dataset.action = action;
  button.dataset.n = String(n);
  if (strength) button.dataset.strength = strength;
  button.title = title;
  button.textContent = label;
  button.disabled = pending.has(key);
  button.addEventListener('click', async () => {
    if (pending.has(key)) return;
    pending.add(key);
    button.disabled = true;
    const path = `/api/jobs/${encodeURIComponent(id)}/${action}/${n}`;
    const result = await api('POST', path, action === 'vary' ? { strength } : undefined);
    pending.delete(key);
    button.disabled = false;
    if (result.ok) {
      used.add(key);
      button.classList.add('used');
      openJob(result.data);
    } else {
      errorMessage(errorText(result));
    }
  });
  return button;
}

function row(className, buttons) {
  const el = document.createElement('div');
  el.className = `row ${className}`;
  el.append(...buttons);
  return el;
}

/** A finished grid: V1–V4 under U1–U4 (as many as the grid has images). */
function decorateGrid(card) {
  const controls = card.querySelector('.controls');
  const upscaleRow = card.querySelector('.upscale-row');
  if (!controls || !upscaleRow || card.querySelector('.vary-row')) return;
  const id = card.dataset.job;
  const count = upscaleRow.querySelectorAll('button').length;
  const buttons = [];
  for (let n = 1; n <= count; n++) {
    buttons.push(pressButton(id, n, 'vary', 'subtle', `V${n}`, `Four subtle variations of image ${n}`));
  }
  controls.append(row('vary-row', buttons));
}

/** A full-size image: both Vary strengths and Upscale ×2. */
function decorateImage(card) {
  if (card.querySelector('.vary-row')) return;
  const id = card.dataset.job;
  const n = Number(card.dataset.n);
  if (!id || !Number.isInteger(n)) return;
  const controls = document.createElement('div');
  controls.className = 'controls';
  controls.append(
    row('vary-row', [
      pressButton(id, n, 'vary', 'subtle', 'Vary (Subtle)', `Four subtle variations of image ${n}`),
      pressButton(id, n, 'vary', 'strong', 'Vary (Strong)', `Four strong variations of image ${n}`),
      pressButton(id, n, 'upscale2x', undefined, 'Upscale ×2', `Image ${n} at twice the size`, 'primary'),
    ]),
  );
  card.append(controls);
}

function decorate() {
  for (const card of logEl.querySelectorAll('.card.job')) decorateGrid(card);
  for (const card of logEl.querySelectorAll('.card.image-card')) decorateImage(card);
}

new MutationObserver(decorate).observe(logEl, { childList: true, subtree: true });
decorate();
