// Image prompts in the playground: pick (or paste) a PNG, JPEG or WebP picture, see it, set the strength,
// remove it. app.js asks `window.imaginePrompt.fields(text)` for what to add to POST /api/imagine
// (`init_image` base64, `init_image_name`, `strength`) and calls `sent()` once the job is queued.

const MAX_BYTES = 20 * 1024 * 1024;
const TYPES = ['image/png', 'image/jpeg', 'image/webp'];
const DEFAULT_STRENGTH = 0.6;

const form = document.getElementById('form');
const send = document.getElementById('send');

const input = document.createElement('input');
input.type = 'file';
input.id = 'image-file';
input.accept = TYPES.join(',');
input.hidden = true;

const attach = document.createElement('button');
attach.type = 'button';
attach.id = 'image-attach';
attach.className = 'image-attach';
attach.title = 'Start from a picture (PNG, JPEG or WebP, up to 20 MiB); you can also paste one';
attach.setAttribute('aria-label', 'Attach an image');
// A picture icon drawn here: an emoji may have no glyph on the reader's system.
const SVG = 'http://www.w3.org/2000/svg';
const icon = document.createElementNS(SVG, 'svg');
icon.setAttribute('viewBox', '0 0 24 24');
icon.setAttribute('width', '20');
icon.setAttribute('height', '20');
icon.setAttribute('aria-hidden', 'true');
for (const [tag, attrs] of [
  ['rect', { x: '3', y: '4', width: '18', height: '16', rx: '2.5' }],
  ['circle', { cx: '9', cy: '10', r: '1.8' }],
  ['path', { d: 'M4 18l5.5-5.5 4 4 2.5-2.5L20 18' }],
]) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.setAttribute('fill', 'none');
  el.setAttribute('stroke', 'currentColor');
  el.setAttribute('stroke-width', '1.8');
  el.setAttribute('stroke-linejoin', 'round');
  icon.append(el);
}
attach.append(icon);

const panel = document.createElement('div');
panel.id = 'image-prompt';
panel.className = 'image-prompt';
panel.hidden = true;

const thumb = document.createElement('img');
thumb.className = 'image-thumb';
thumb.alt = 'The chosen picture';

const label = document.createElement('span');
label.className = 'image-name';

const strengthLabel = document.createElement('label');
strengthLabel.className = 'image-strength';
strengthLabel.htmlFor = 'image-strength';
const strengthText = document.createElement('span');
const slider = document.createElement('input');
slider.type = 'range';
slider.id = 'image-strength';
slider.min = '0.05';
slider.max = '1';
slider.step = '0.05';
slider.value = String(DEFAULT_STRENGTH);
strengthLabel.append(strengthText, slider);

const remove = document.createElement('button');
remove.type = 'button';
remove.id = 'image-remove';
remove.className = 'image-remove';
remove.title = 'Remove the picture';
remove.setAttribute('aria-label', 'Remove the picture');
remove.textContent = '×';

const problem = document.createElement('p');
problem.id = 'image-problem';
problem.className = 'image-problem';
problem.setAttribute('role', 'alert');
problem.hidden = true;

panel.append(thumb, label, strengthLabel, remove);
form.insertBefore(attach, send);
form.append(input);
form.parentElement.insertBefore(panel, form);
form.parentElement.insertBefore(problem, form);

/** The chosen picture, or null. */
let chosen = null;
let previewUrl = null;

function showStrength() {
  strengthText.textContent = `strength ${Number(slider.value).toFixed(2)}`;
}

function sizeText(bytes) {
  return bytes >= 1024 * 1024
    ? `${(bytes / 1024 / 1024).toFixed(1)} MB`
    : `${Math.max(1, Math.round(bytes / 1024))} KB`;
}

function clear() {
  chosen = null;
  if (previewUrl !== null) URL.revokeObjectURL(previewUrl);
  previewUrl = null;
  thumb.removeAttribute('src');
  panel.hidden = true;
  input.value = '';
}

function choose(file, name) {
  problem.hidden = true;
  if (!TYPES.includes(file.type)) {
    problem.textContent = `${name} is not a PNG, JPEG or WebP picture.`;
    problem.hidden = false;
    return;
  }
  if (file.size > MAX_BYTES) {
    problem.textContent = `${name} is ${sizeText(file.size)}; pictures up to 20 MiB are accepted.`;
    problem.hidden = false;
    return;
  }
  clear();
  chosen = { file, name };
  previewUrl = URL.createObjectURL(file);
  thumb.src = previewUrl;
  // Text, never markup: the file name is the user's.
  label.textContent = `${name} · ${sizeText(file.size)}`;
  label.title = name;
  panel.hidden = false;
}

attach.addEventListener('click', () => input.click());
input.addEventListener('change', () => {
  const file = input.files?.[0];
  if (file) choose(file, file.name);
});
remove.addEventListener('click', () => {
  clear();
  document.getElementById('prompt')?.focus();
});
slider.addEventListener('input', showStrength);
document.addEventListener('paste', (event) => {
  const file = [...(event.clipboardData?.files ?? [])].find((f) => f.type.startsWith('image/'));
  if (!file) return;
  event.preventDefault();
  choose(file, file.name && file.name !== 'image.png' ? file.name : 'pasted image');
});
showStrength();

/** The server takes `init_image_name` of up to 200 characters (it only labels the job). */
const MAX_NAME_CHARS = 200;

/** A file name as sent: a longer one (filesystems allow 255) is shortened, keeping its extension. */
function sentName(name) {
  if (name.length <= MAX_NAME_CHARS) return name;
  const dot = name.lastIndexOf('.');
  const ext = dot > 0 && name.length - dot <= 10 ? name.slice(dot) : '';
  let stem = '';
  // By code point, so a surrogate pair is never cut in half.
  for (const ch of name.slice(0, name.length - ext.length)) {
    if (stem.length + ch.length + 1 + ext.length > MAX_NAME_CHARS) break;
    stem += ch;
  }
  return `${stem}…${ext}`;
}

function base64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/u, ''));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

window.imaginePrompt = {
  /** Extra body fields for POST /api/imagine; `--strength` typed in the text wins over the slider. */
  async fields(text) {
    if (chosen === null) return {};
    const typed = /(^|\s)(--|—|–)strength\b/iu.test(text);
    return {
      init_image: await base64(chosen.file),
      init_image_name: sentName(chosen.name),
      ...(typed ? {} : { strength: Number(slider.value) }),
    };
  },
  /** The job is queued: the picture was used. */
  sent: clear,
};
