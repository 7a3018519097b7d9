// Open/close for the playground's side panels (History, Settings): the header button toggles its
// panel, the panel's [data-close] button and Escape close it, and opening one closes the others
// (they share the same place on the screen). Also the panels' element builder.

/**
 * Wires `panel` to its `opener` button; `onOpen` runs each time it opens (to load its contents).
 * Returns `setOpen(show)` for the panel's own code.
 */
export function bindPanel(panel, opener, onOpen) {
  function setOpen(show) {
    panel.hidden = !show;
    opener.setAttribute('aria-expanded', String(show));
    if (show) {
      document.dispatchEvent(new CustomEvent('imagine:panel', { detail: { id: panel.id } }));
      onOpen();
    }
  }

  opener.addEventListener('click', () => setOpen(panel.hidden));
  panel.querySelector('[data-close]').addEventListener('click', () => setOpen(false));
  document.addEventListener('imagine:panel', (event) => {
    if (event.detail?.id !== panel.id && !panel.hidden) {
      panel.hidden = true;
      opener.setAttribute('aria-expanded', 'false');
    }
  });
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !panel.hidden) setOpen(false);
  });
  return setOpen;
}

/**
 * A new element: `class`, `text` and `value` set as properties (so user text is never parsed as HTML),
 * `on…` as listeners, anything else as an attribute; children appended, empty ones skipped.
 */
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'value') node.value = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) node.append(child);
  }
  return node;
}
