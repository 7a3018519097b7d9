// Open/close for the playground's side panels (History, Settings): the header button toggles its
// panel, the panel's [data-close] button and Escape close it, and opening one closes the others
// (they share the same place on the screen).

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
