/**
 * Tiny DOM helpers for the sidebar sections.
 *
 * Text always goes in through `textContent` (never parsed as HTML): build logs, package names, warnings
 * and diffs come from notebooks and Docker, so they are untrusted (RELIABILITY A7).
 */

export interface IElementOptions {
  /**
   * CSS classes, space separated.
   */
  className?: string;
  /**
   * Text content (set with `textContent`).
   */
  text?: string;
  title?: string;
  attrs?: Record<string, string>;
}

/**
 * Create an element with classes, text and attributes, and append children.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  options: IElementOptions = {},
  children: Array<Node | null | undefined | false> = []
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (options.className) {
    node.className = options.className;
  }
  if (options.text !== undefined) {
    node.textContent = options.text;
  }
  if (options.title) {
    node.title = options.title;
  }
  for (const [name, value] of Object.entries(options.attrs ?? {})) {
    node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child) {
      node.appendChild(child);
    }
  }
  return node;
}

/**
 * A JupyterLab-styled button.
 */
export function button(
  label: string,
  onClick: () => void,
  options: {
    className?: string;
    title?: string;
    accept?: boolean;
    warn?: boolean;
    /**
     * The accessible name when the label alone is ambiguous (four sections have "Refresh").
     */
    ariaLabel?: string;
  } = {}
): HTMLButtonElement {
  const classes = ['jp-Button', 'jp-mod-styled', 'jp-Envpack-button'];
  if (options.accept) {
    classes.push('jp-mod-accept');
  }
  if (options.warn) {
    classes.push('jp-mod-warn');
  }
  if (options.className) {
    classes.push(options.className);
  }
  const node = h('button', {
    className: classes.join(' '),
    text: label,
    title: options.title,
    attrs: options.ariaLabel
      ? { type: 'button', 'aria-label': options.ariaLabel }
      : { type: 'button' }
  });
  node.addEventListener('click', () => onClick());
  return node;
}

/**
 * A readable error box (message, then the hint on its own line).
 */
export function errorBox(message: string): HTMLElement {
  return h('div', {
    className: 'jp-Envpack-error',
    text: message,
    attrs: { role: 'alert' }
  });
}

/**
 * Remove every child of a node.
 */
export function clear(node: HTMLElement): void {
  while (node.firstChild) {
    node.removeChild(node.firstChild);
  }
}

/**
 * Format a time stamp (ISO string or seconds since the epoch) for lists.
 */
export function formatTime(value: string | number | null | undefined): string {
  if (value === null || value === undefined || value === '') {
    return '';
  }
  const ms =
    typeof value === 'number'
      ? value < 1e12
        ? value * 1000
        : value
      : Date.parse(value);
  if (!Number.isFinite(ms)) {
    return String(value);
  }
  return new Date(ms).toLocaleString();
}

/**
 * A small "Copy" button that puts `value` on the clipboard and says "Copied" for a moment.
 *
 * `what` names the value for screen readers ("Copy image tag"); failures (no clipboard permission,
 * insecure context) are said on the button instead of being swallowed.
 */
export function copyButton(value: string, what: string): HTMLButtonElement {
  const node = h('button', {
    className: 'jp-Button jp-mod-minimal jp-Envpack-copy',
    text: 'Copy',
    title: `Copy ${what}: ${value}`,
    attrs: { type: 'button', 'aria-label': `Copy ${what}` }
  });
  node.addEventListener('click', () => {
    const done = (text: string) => {
      node.textContent = text;
      node.setAttribute('aria-live', 'polite');
      window.setTimeout(() => (node.textContent = 'Copy'), 2000);
    };
    const clipboard = navigator.clipboard;
    if (!clipboard) {
      done('Copy failed');
      return;
    }
    clipboard.writeText(value).then(
      () => done('Copied'),
      () => done('Copy failed')
    );
  });
  return node;
}

/**
 * A long value shown on one line (ellipsised, full value in the tooltip) with a copy button.
 */
export function copyableValue(
  value: string,
  what: string,
  options: { className?: string; text?: string } = {}
): HTMLElement[] {
  return [
    h('code', {
      className: options.className ?? 'jp-Envpack-value',
      text: options.text ?? value,
      title: value
    }),
    copyButton(value, what)
  ];
}

/**
 * The `name = value` lines of a text box (blank lines and `#` comments skipped) with their line
 * numbers; `name` is '' when the line does not assign to a Python identifier.
 */
export function assignments(
  text: string
): Array<{ line: number; name: string; value: string }> {
  const found: Array<{ line: number; name: string; value: string }> = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) {
      return;
    }
    const eq = line.indexOf('=');
    const name = (eq === -1 ? '' : line.slice(0, eq)).trim();
    found.push({
      line: i + 1,
      name: /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? name : '',
      value: line.slice(eq + 1).trim()
    });
  });
  return found;
}

/**
 * The positions of the open `<details>` under `root` (to keep them open across a re-render).
 */
export function openDetails(root: HTMLElement): number[] {
  return Array.from(root.querySelectorAll('details')).flatMap((d, i) =>
    d.open ? [i] : []
  );
}

/**
 * Open the `<details>` at `positions` under `root` again (see {@link openDetails}).
 */
export function reopenDetails(root: HTMLElement, positions: number[]): void {
  const all = root.querySelectorAll('details');
  positions.forEach(i => {
    if (all[i]) {
      all[i].open = true;
    }
  });
}
