// The playground page: plain browser JavaScript, no build step. It talks to the JSON API and listens
// to /api/events (server-sent events) for progress and results. History lives in localStorage;
// the jobs themselves live on the server, so a reload shows their current state.

const HISTORY_KEY = 'imagine.history.v1';
const HISTORY_MAX = 120;
const FINAL = new Set(['done', 'failed', 'cancelled']);

const logEl = document.getElementById('log');
const form = document.getElementById('form');
const input = document.getElementById('prompt');
const sendButton = document.getElementById('send');
const connEl = document.getElementById('conn');
const modelEl = document.getElementById('model');
const welcome = document.getElementById('welcome');
const jumpButton = document.getElementById('jump');

/** id → { el, job, progress, used:Set<string>, pending:Set<string> } */
const jobs = new Map();
let history = loadHistory();
let live = false;
let events;

// ——— small DOM helpers ———

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'text') el.textContent = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/**
 * Text as nodes, with each `--flag` in a span that does not wrap: browsers may break a line after a
 * hyphen, which would leave `--` at the end of one line and `seed` at the start of the next.
 */
function plain(text) {
  const out = document.createDocumentFragment();
  let at = 0;
  for (const match of text.matchAll(/--[A-Za-z][\w-]*/gu)) {
    if (match.index > at) out.append(document.createTextNode(text.slice(at, match.index)));
    out.append(h('span', { class: 'flag', text: match[0] }));
    at = match.index + match[0].length;
  }
  if (at < text.length) out.append(document.createTextNode(text.slice(at)));
  return out;
}

/** Renders the service's tiny markdown (`code`, **bold**, backslash escapes) as nodes, never as HTML. */
function rich(text) {
  const out = document.createDocumentFragment();
  let buffer = '';
  let bold = null;
  const flush = () => {
    if (buffer === '') return;
    (bold ?? out).append(plain(buffer));
    buffer = '';
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\\' && i + 1 < text.length) {
      buffer += text[++i];
    } else if (c === '`') {
      const end = text.indexOf('`', i + 1);
      if (end === -1) {
        buffer += c;
        continue;
      }
      flush();
      (bold ?? out).append(h('code', {}, plain(text.slice(i + 1, end))));
      i = end;
    } else if (c === '*' && text[i + 1] === '*') {
      flush();
      if (bold === null) {
        bold = h('b');
      } else {
        out.append(bold);
        bold = null;
      }
      i++;
    } else {
      buffer += c;
    }
  }
  flush();
  if (bold !== null) out.append(bold);
  return out;
}

// ——— scrolling ———
// The log follows the newest message while the reader is at the bottom, as chats do: new cards,
// and cards that grow (progress, a grid that loads), keep the bottom in view. A reader who scrolled
// up stays where they are and gets a "New result ↓" button instead.

/** Whether the log keeps its bottom in view; false once the reader scrolls up. */
let follow = true;
/** scrollTop after our own last scroll: a scroll event above it is the reader's doing. */
let pinnedTop = 0;

function fromBottom() {
  return logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight;
}

function pin() {
  logEl.scrollTop = logEl.scrollHeight;
  pinnedTop = logEl.scrollTop;
}

function showJump(show) {
  jumpButton.hidden = !show;
}

logEl.addEventListener('scroll', () => {
  if (fromBottom() <= 24) {
    follow = true;
    showJump(false);
  } else if (logEl.scrollTop < pinnedTop - 2) {
    // Our own scrolls only go down; content growing below does not move scrollTop either.
    follow = false;
  }
});

// Content changes size without scroll events (images decode, progress turns into a grid, the window
// or the on-screen keyboard resizes the log): keep the bottom in view while following.
const resized = new ResizeObserver(() => {
  if (follow) pin();
});
resized.observe(logEl);

jumpButton.addEventListener('click', () => {
  follow = true;
  showJump(false);
  pin();
});

/** Adds a message at the end. `result`: something the reader waits for, worth a "New result" button. */
function append(el, result = false) {
  welcome.hidden = true;
  logEl.append(el);
  resized.observe(el);
  if (follow) pin();
  else if (result) showJump(true);
  return el;
}

/** The reader's own command: bring them to the bottom, where its answer will appear. */
function followNow() {
  follow = true;
  showJump(false);
  pin();
}

function botMessage(card) {
  return h('div', { class: 'msg bot' }, h('img', { class: 'avatar', src: '/favicon.svg', alt: '' }), card);
}

function randomKey() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

// ——— API ———

async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (method === 'POST') headers['idempotency-key'] = `pg-${randomKey()}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
    });
  } catch {
    return { ok: false, status: 0, data: { error: { message: 'The playground server is not reachable.' } } };
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { ok: response.ok, status: response.status, data, retryAfter: response.headers.get('retry-after') };
}

function errorText(result) {
  const message = result.data?.error?.message ?? `Request failed (HTTP ${result.status}).`;
  if (result.status === 429 && result.retryAfter) return `${message} (try again in ${result.retryAfter} s)`;
  return message;
}

// ——— history ———

function loadHistory() {
  try {
    const value = JSON.parse(localStorage.getItem(HISTORY_KEY) ?? '[]');
    return Array.isArray(value) ? value : [];
  } catch {
    return [];
  }
}

function remember(entry) {
  history.push(entry);
  if (history.length > HISTORY_MAX) history = history.slice(-HISTORY_MAX);
  try {
    localStorage.setItem(HISTORY_KEY, JSON.stringify(history));
  } catch {
    // Storage full or disabled: the page still works, it just forgets on reload.
  }
}

// ——— messages ———

function userMessage(text, save = true) {
  append(h('div', { class: 'msg user' }, h('div', { class: 'bubble' }, plain(text))));
  if (save) remember({ t: 'user', text });
}

function errorMessage(text, save = true) {
  append(
    botMessage(
      h(
        'div',
        { class: 'card error', role: 'alert' },
        h(
          'div',
          { class: 'who' },
          h('b', { text: 'imagine' }),
          h('span', { class: 'pill failed', text: 'error' }),
        ),
        h('div', { class: 'error-text' }, rich(text)),
      ),
    ),
    save,
  );
  if (save) remember({ t: 'error', text });
}

function imageMessage(image, save = true) {
  const card = h(
    'div',
    { class: 'card image-card', dataset: { job: image.id, n: String(image.n) } },
    h(
      'div',
      { class: 'who' },
      h('b', { text: 'imagine' }),
      h('span', { class: 'pill done', text: `U${image.n}` }),
    ),
    h('div', { class: 'title', text: `Image ${image.n} · seed ${image.seed}` }),
    h('div', { class: 'line', text: image.prompt }),
    h(
      'a',
      { href: image.image, target: '_blank', rel: 'noopener' },
      h('img', {
        class: 'full',
        src: image.image,
        alt: `Image ${image.n}: ${image.prompt}`,
        loading: 'lazy',
      }),
    ),
    h(
      'div',
      { class: 'links' },
      h('a', { href: image.image, download: `${image.id}-${image.n}.png`, text: 'Download PNG' }),
      h('a', { href: image.image, target: '_blank', rel: 'noopener', text: 'Open' }),
    ),
  );
  append(botMessage(card), save);
  if (save)
    remember({
      t: 'image',
      id: image.id,
      n: image.n,
      seed: image.seed,
      prompt: image.prompt,
      image: image.image,
    });
}

/** A job's card; filled by renderJob whenever its state changes. */
function jobMessage(id, first, save = true) {
  const card = h('div', { class: 'card job', dataset: { job: id } });
  const entry = { el: card, job: null, progress: null, used: new Set(), pending: new Set(), first };
  jobs.set(id, entry);
  append(botMessage(card), save);
  if (save) remember({ t: 'job', id });
  renderJob(id);
  return entry;
}

function kindLabel(job) {
  if (job.kind === 'refine' && job.parent?.n) return `refine of image ${job.parent.n}`;
  if (job.kind === 'reroll') return 'reroll';
  return null;
}

function seedChips(job) {
  const stem = job.prompt;
  return h(
    'div',
    { class: 'seeds' },
    job.seeds.map((seed, i) => {
      const suffix = (job.prompts[i] ?? '').slice(stem.length).replace(/^[\s,]+/u, '');
      return h(
        'span',
        { class: 'seed', title: job.prompts[i] ?? '' },
        h('b', { class: 'k', text: String(i + 1) }),
        String(seed),
        suffix ? ` · ${suffix}` : '',
      );
    }),
  );
}

function button(id, label, action, n, style, ...children) {
  const entry = jobs.get(id);
  const key = `${action}:${n}`;
  return h(
    'button',
    {
      type: 'button',
      class: `btn ${style ?? ''} ${entry?.used.has(key) ? 'used' : ''}`.trim(),
      dataset: { action, n: String(n) },
      disabled: entry?.pending.has(key) ?? false,
      title:
        action === 'refine'
          ? `Refine image ${n}`
          : action === 'upscale'
            ? `Image ${n} at full size`
            : action === 'reroll'
              ? 'New seeds, same prompt'
              : 'Cancel this job',
      text: label,
      onclick: () => press(id, action, n),
    },
    children,
  );
}

/** Two arrows in a circle, decoration only (aria-hidden): the button's text names it. */
function rerollIcon() {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon');
  const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', 'M20 11a8 8 0 0 0-14.3-4.9M4 13a8 8 0 0 0 14.3 4.9M5 2v4.5h4.5M19 22v-4.5h-4.5');
  svg.append(path);
  return svg;
}

function renderJob(id) {
  const entry = jobs.get(id);
  if (!entry) return;
  const card = entry.el;
  const job = entry.job;
  card.replaceChildren();
  if (job === null) {
    const first = entry.first;
    card.append(
      h(
        'div',
        { class: 'who' },
        h('b', { text: 'imagine' }),
        h('span', { class: 'pill queued', text: 'queued' }),
      ),
      h('div', { class: 'line', text: first ? `Seeds ${first.seeds.join(' ')} · loading…` : 'Loading…' }),
    );
    return;
  }
  if (job.status === 'expired') {
    card.append(
      h(
        'div',
        { class: 'who' },
        h('b', { text: 'imagine' }),
        h('span', { class: 'pill expired', text: 'expired' }),
      ),
      h('div', {
        class: 'line',
        text: 'This grid has expired on the server; run /imagine again to make a new one.',
      }),
    );
    return;
  }
  const label = kindLabel(job);
  card.append(
    h(
      'div',
      { class: 'who' },
      h('b', { text: 'imagine' }),
      h('span', { class: `pill ${job.status}`, text: job.status }),
      label ? h('span', { text: label }) : null,
    ),
    h('div', { class: 'title', text: job.prompt }),
    seedChips(job),
  );

  if (job.status === 'queued') {
    const where =
      job.position === 0 || job.position === null
        ? 'next in line'
        : `position ${job.position + 1} in the queue`;
    card.append(
      h('div', { class: 'line', text: `Queued · ${where}` }),
      h('div', { class: 'bar waiting', role: 'progressbar', 'aria-label': 'Waiting' }, h('span')),
      h(
        'div',
        { class: 'controls' },
        h('div', { class: 'row' }, button(id, 'Cancel', 'cancel', 0, 'danger')),
      ),
    );
  } else if (job.status === 'running') {
    const progress = entry.progress ?? { ...job.progress, percent: pct(job.progress), preview: null };
    const bar = h('span');
    bar.style.width = `${progress.percent}%`;
    card.append(
      h(
        'div',
        { class: 'progress' },
        h('img', {
          class: 'preview',
          alt: 'Preview',
          src: progress.preview ?? undefined,
          hidden: progress.preview ? undefined : true,
        }),
        h(
          'div',
          {},
          h('div', { class: 'bar', role: 'progressbar', 'aria-valuenow': String(progress.percent) }, bar),
          h('div', {
            class: 'label',
            text: `Generating… ${progress.percent}% · step ${progress.step}/${progress.total}`,
          }),
        ),
      ),
      h(
        'div',
        { class: 'controls' },
        h('div', { class: 'row' }, button(id, 'Cancel', 'cancel', 0, 'danger')),
      ),
    );
  } else if (job.status === 'done') {
    const wrap = h(
      'a',
      { class: 'grid-wrap', href: job.grid, target: '_blank', rel: 'noopener' },
      h('img', { class: 'grid', src: job.grid, alt: `Grid: ${job.prompt}` }),
    );
    if (job.images.length === 4) {
      const spots = [
        ['6px', '6px'],
        ['calc(50% + 6px)', '6px'],
        ['6px', 'calc(50% + 6px)'],
        ['calc(50% + 6px)', 'calc(50% + 6px)'],
      ];
      spots.forEach(([left, top], i) => {
        const badge = h('span', { class: 'n', text: String(i + 1) });
        badge.style.left = left;
        badge.style.top = top;
        wrap.append(badge);
      });
    }
    const s = job.settings;
    const chips = [s.sampler, `${s.steps} steps`, `cfg ${s.guidance}`, `${s.width}×${s.height}`];
    // Which model made (or makes) it: the grid's own, whatever the default is now.
    if (s.model) chips.unshift(`model ${s.model}`);
    if (s.negative) chips.push(`no: ${s.negative}`);
    if (job.timings?.startedAt && job.timings?.finishedAt) {
      chips.push(`${((job.timings.finishedAt - job.timings.startedAt) / 1000).toFixed(1)} s`);
    }
    const count = job.images.length;
    const refineRow = [];
    const upscaleRow = [];
    for (let n = 1; n <= count; n++) {
      refineRow.push(button(id, String(n), 'refine', n));
      upscaleRow.push(button(id, `U${n}`, 'upscale', n));
    }
    // The word is the button's name. The icon is drawn, not an emoji: the 🔄 that chat apps show is an
    // empty box where no emoji font is installed.
    refineRow.push(button(id, undefined, 'reroll', 0, 'primary', rerollIcon(), 'Reroll'));
    card.append(
      wrap,
      h(
        'div',
        { class: 'settings' },
        chips.map((c) => h('span', { class: 'chip', text: c })),
      ),
      job.notes.length > 0
        ? h(
            'ul',
            { class: 'notes' },
            job.notes.map((n) => h('li', { text: n })),
          )
        : null,
      h(
        'div',
        { class: 'controls' },
        h('div', { class: 'row refine-row' }, refineRow),
        h('div', { class: 'row upscale-row' }, upscaleRow),
      ),
    );
  } else if (job.status === 'failed') {
    card.append(
      h('div', { class: 'failed-text' }, '❌ Failed: ', rich(job.error?.message ?? 'unknown error')),
    );
  } else if (job.status === 'cancelled') {
    card.append(h('div', { class: 'line', text: '🚫 Cancelled.' }));
  }
}

function pct(progress) {
  return progress.total > 0 ? Math.round((100 * progress.step) / progress.total) : 0;
}

/** Updates a running card in place (no flicker of the preview); rebuilds when the state changed. */
function showProgress(event) {
  const entry = jobs.get(event.id);
  if (!entry) return;
  entry.progress = event;
  if (entry.job === null || FINAL.has(entry.job.status)) return;
  if (entry.job.status !== 'running') {
    entry.job = { ...entry.job, status: 'running', progress: { step: event.step, total: event.total } };
    renderJob(event.id);
    return;
  }
  const bar = entry.el.querySelector('.bar > span');
  const label = entry.el.querySelector('.progress .label');
  const preview = entry.el.querySelector('.preview');
  if (!bar || !label || !preview) {
    renderJob(event.id);
    return;
  }
  bar.style.width = `${event.percent}%`;
  bar.parentElement?.setAttribute('aria-valuenow', String(event.percent));
  label.textContent = `Generating… ${event.percent}% · step ${event.step}/${event.total}`;
  if (event.preview) {
    preview.src = event.preview;
    preview.hidden = false;
  }
}

async function refresh(id) {
  const entry = jobs.get(id);
  if (!entry) return;
  const result = await api('GET', `/api/jobs/${encodeURIComponent(id)}`);
  if (result.ok) {
    const before = entry.job?.status;
    entry.job = result.data;
    if (result.data.status !== 'running') entry.progress = null;
    if (before === 'running' && result.data.status === 'running' && entry.progress) return;
    renderJob(id);
    // A grid finished out of sight below a reader who scrolled up: offer the way down.
    if (before !== undefined && before !== 'done' && result.data.status === 'done' && !follow) {
      if (entry.el.getBoundingClientRect().top > logEl.getBoundingClientRect().bottom) showJump(true);
    }
  } else if (result.status === 404) {
    entry.job = { status: 'expired' };
    renderJob(id);
  }
}

async function press(id, action, n) {
  const entry = jobs.get(id);
  const key = `${action}:${n}`;
  if (!entry || entry.pending.has(key)) return;
  entry.pending.add(key);
  renderJob(id);
  const path =
    action === 'refine' || action === 'upscale'
      ? `/api/jobs/${encodeURIComponent(id)}/${action}/${n}`
      : `/api/jobs/${encodeURIComponent(id)}/${action}`;
  const result = await api('POST', path);
  entry.pending.delete(key);
  if (result.ok) {
    if (action !== 'cancel') entry.used.add(key);
    if (action === 'refine' || action === 'reroll') {
      jobMessage(result.data.id, result.data);
      void refresh(result.data.id);
      reconnect();
    } else if (action === 'upscale') {
      imageMessage(result.data);
    } else {
      await refresh(id);
    }
  } else {
    errorMessage(errorText(result));
  }
  renderJob(id);
}

// ——— live updates ———

function setConn(state, text) {
  connEl.dataset.state = state;
  connEl.textContent = text;
}

/** One stream for this browser's jobs; reopened when a job from an older session needs watching. */
function reconnect() {
  const open = [...jobs.entries()]
    .filter(([, e]) => e.job === null || !FINAL.has(e.job.status))
    .map(([id]) => id);
  const url = `/api/events${open.length > 0 ? `?job=${open.slice(-100).map(encodeURIComponent).join(',')}` : ''}`;
  if (events?.url.endsWith(url) && events.readyState !== EventSource.CLOSED) return;
  events?.close();
  events = new EventSource(url);
  events.addEventListener('open', () => {
    live = true;
    setConn('live', 'live');
  });
  events.addEventListener('error', () => {
    live = false;
    setConn(events.readyState === EventSource.CLOSED ? 'offline' : 'connecting', 'reconnecting…');
  });
  events.addEventListener('progress', (e) => showProgress(JSON.parse(e.data)));
  events.addEventListener('job', (e) => {
    const event = JSON.parse(e.data);
    if (jobs.has(event.id)) void refresh(event.id);
  });
}

// Events can be missed (another bot process delivered, a reconnect): unfinished jobs are re-read too.
let ticks = 0;
setInterval(() => {
  ticks++;
  if (live && ticks % 4 !== 0) return;
  for (const [id, entry] of jobs) {
    if (entry.job === null || !FINAL.has(entry.job.status)) void refresh(id);
  }
}, 2000);

// ——— composer ———

async function submit(raw) {
  const text = raw.trim();
  if (text === '') return;
  const command = /^\/imagine\b/iu.test(text) ? text : text.startsWith('/') ? null : `/imagine ${text}`;
  followNow();
  userMessage(command ?? text);
  if (command === null) {
    errorMessage(`Unknown command \`${text.split(/\s/u)[0]}\`. Type \`/imagine\` and a prompt.`);
    return;
  }
  sendButton.disabled = true;
  try {
    const result = await api('POST', '/api/imagine', { text: command });
    if (result.ok) {
      jobMessage(result.data.id, result.data);
      void refresh(result.data.id);
      reconnect();
    } else {
      errorMessage(errorText(result));
    }
  } finally {
    sendButton.disabled = false;
  }
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const value = input.value;
  input.value = '';
  void submit(value);
});

for (const example of document.querySelectorAll('.example')) {
  example.addEventListener('click', () => {
    input.value = example.textContent ?? '';
    input.focus();
  });
}

document.getElementById('clear').addEventListener('click', () => {
  history = [];
  localStorage.removeItem(HISTORY_KEY);
  jobs.clear();
  for (const el of [...logEl.children]) {
    if (el === welcome) continue;
    resized.unobserve(el);
    el.remove();
  }
  welcome.hidden = false;
  followNow();
  reconnect();
});

// The history panel (history.js) opens one of the user's grids here, as its card with its buttons.
document.addEventListener('imagine:open', (event) => {
  const id = event.detail?.id;
  if (typeof id !== 'string') return;
  const known = jobs.get(id);
  if (known) {
    known.el.scrollIntoView({ block: 'center' });
    return;
  }
  followNow();
  jobMessage(id, null);
  void refresh(id);
  reconnect();
});

// ——— start ———

async function start() {
  const info = await api('GET', '/api/info');
  if (info.ok && info.data?.model?.name) {
    const name = info.data.model.name;
    modelEl.textContent = info.data.model.demo && !/demo/iu.test(name) ? `${name} (demo)` : name;
    // The chip may be cut short with an ellipsis on narrow screens: the title has the whole name.
    modelEl.title = info.data.model.demo
      ? `Model: ${name}. The built-in demo model makes synthetic images. Set MODEL_DIR for Stable Diffusion.`
      : `Model: ${name}`;
    modelEl.hidden = false;
    // Several models: name them all (the first is the default); `--model NAME` picks one.
    const models = Array.isArray(info.data.models) ? info.data.models : [];
    if (models.length > 1) {
      modelEl.textContent = `models: ${models.join(', ')}`;
      modelEl.title = `Models served here: ${models.join(', ')} (the first is the default). Pick one with --model NAME.`;
    }
  }
  for (const entry of history) {
    if (entry.t === 'user') userMessage(entry.text, false);
    else if (entry.t === 'error') errorMessage(entry.text, false);
    else if (entry.t === 'image') imageMessage(entry, false);
    else if (entry.t === 'job' && typeof entry.id === 'string') jobMessage(entry.id, null, false);
  }
  // Open at the latest message; the resize observer keeps it there while the cards fill in.
  followNow();
  await Promise.all([...jobs.keys()].map((id) => refresh(id)));
  reconnect();
  input.focus();
}

void start();
