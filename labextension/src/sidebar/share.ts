/**
 * Share: the notebook's Binder link (open + copy), its Markdown and RST badges (copy), the
 * warnings that say when Binder would not see what the user sees (with their fixes), and a button
 * that writes the `binder/` folder. It also says plainly when the server has no Docker engine
 * (on Binder itself, say): build and rerun are off, snapshot, Dockerfile and Binder still work.
 */
import { Clipboard } from '@jupyterlab/apputils';
import { refreshIcon } from '@jupyterlab/ui-components';

import { errorMessage } from '../api';
import { EnvpackModel } from '../model';
import { IBinderInfo, IWarning } from '../tokens';
import { button, clear, errorBox, h } from './dom';
import { EnvpackSection, toolbarButton } from './section';

/**
 * The notice shown when the server's Docker engine is unreachable.
 */
export const NO_ENGINE_NOTICE =
  "The server's Docker engine is unavailable: Build, Run and Containerise are disabled here. " +
  'Snapshot, Dockerfile and Binder still work.';

export class ShareSection extends EnvpackSection {
  constructor(options: ShareSection.IOptions) {
    super({ label: 'Share', rank: 42, ...options });
    this._copy = options.copy ?? (text => Clipboard.copyToSystem(text));
    this.addAction(
      'refresh',
      toolbarButton({
        icon: refreshIcon,
        onClick: () => void this.load(),
        tooltip:
          'Refresh share links: check the Binder link and the git state again'
      })
    );
    this._writeButton = button(
      'Write binder/ folder',
      () => void this._write(),
      {
        className: 'jp-Envpack-writeBinder',
        title:
          "Write binder/requirements.txt and runtime.txt (pinned from the notebook's kernel) at " +
          'the root of its git repository'
      }
    );
    this._status = h('div', {
      className: 'jp-Envpack-note',
      attrs: { 'aria-live': 'polite' }
    });
    this.model.changed.connect(this._onSnapshot, this);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.model.changed.disconnect(this._onSnapshot, this);
    super.dispose();
  }

  /**
   * The last Binder answer for the current notebook (`null` while loading or on error).
   */
  get info(): IBinderInfo | null {
    return this._info;
  }

  /**
   * Ask the server for the Binder link, badges and warnings of the current notebook.
   */
  async load(): Promise<void> {
    const path = this.model.path;
    const ticket = ++this._ticket;
    this._info = null;
    this._error = '';
    this._loadedPath = path;
    if (this.isAttached) {
      this.render();
    }
    if (!path) {
      return;
    }
    let info: IBinderInfo | null = null;
    let error = '';
    try {
      info = await this.model.client.getBinder(path);
    } catch (err) {
      error = errorMessage(err);
    }
    if (ticket !== this._ticket) {
      return; // the user switched notebooks meanwhile: a newer answer is coming
    }
    this._info = info;
    this._error = error;
    if (this.isAttached) {
      this.render();
    }
  }

  protected watches(kind: EnvpackModel.ChangeKind): boolean {
    return kind === 'path' || kind === 'status';
  }

  render(): void {
    clear(this.body);
    if (!this.model.engineAvailable) {
      this.body.appendChild(
        h('div', {
          className: 'jp-Envpack-engineNotice',
          text: NO_ENGINE_NOTICE,
          attrs: { role: 'note' }
        })
      );
    }
    const path = this.model.path;
    if (!path) {
      this.body.appendChild(
        h('p', { className: 'jp-Envpack-empty', text: 'Open a notebook.' })
      );
      return;
    }
    if (path !== this._loadedPath) {
      void this.load(); // renders again (loading, then the answer)
      return;
    }
    if (this._error) {
      this.body.appendChild(errorBox(this._error));
    } else if (!this._info) {
      this.body.appendChild(
        h('p', {
          className: 'jp-Envpack-loading',
          text: 'Checking the git repository…'
        })
      );
    } else {
      this.body.append(...this._renderInfo(this._info));
    }
    this._writeButton.disabled = this._writing;
    this.body.append(
      h('div', { className: 'jp-Envpack-row' }, [this._writeButton]),
      this._status
    );
  }

  /**
   * A new snapshot (the notebook was saved, or Refresh): git state and pins may have changed.
   */
  private _onSnapshot(_: EnvpackModel, kind: EnvpackModel.ChangeKind): void {
    if (
      kind === 'snapshot' &&
      !this.model.snapshotLoading &&
      this.isAttached &&
      this.model.path !== null &&
      this.model.path === this._loadedPath &&
      (this._info !== null || this._error !== '')
    ) {
      void this.load();
    }
  }

  private _renderInfo(info: IBinderInfo): HTMLElement[] {
    const nodes: HTMLElement[] = [];
    if (info.link) {
      // Only an https link becomes clickable; anything else stays text.
      const safe = /^https:\/\//i.test(info.link);
      const link = safe
        ? h('a', {
            className: 'jp-Envpack-binderLink',
            text: info.link,
            attrs: {
              href: info.link,
              target: '_blank',
              rel: 'noopener noreferrer'
            }
          })
        : h('code', { className: 'jp-Envpack-binderLink', text: info.link });
      nodes.push(
        h('div', { className: 'jp-Envpack-label', text: 'Binder link' }),
        h('div', { className: 'jp-Envpack-binderRow' }, [
          link,
          this._copyButton('Copy link', info.link, 'the Binder link')
        ])
      );
    } else {
      nodes.push(
        h('p', {
          className: 'jp-Envpack-empty jp-Envpack-noLink',
          text: 'No Binder link yet: see the warnings below.'
        })
      );
    }
    if (info.badges) {
      nodes.push(
        h('div', { className: 'jp-Envpack-label', text: 'Badges' }),
        this._badge('Markdown', info.badges.markdown),
        this._badge('RST', info.badges.rst)
      );
    }
    if (info.warnings.length) {
      nodes.push(
        h(
          'div',
          { className: 'jp-Envpack-warnings jp-Envpack-binderWarnings' },
          [h('ul', {}, info.warnings.map(renderWarning))]
        )
      );
    } else if (info.link) {
      nodes.push(
        h('p', {
          className: 'jp-Envpack-note',
          text: 'Binder will build what you see here.'
        })
      );
    }
    return nodes;
  }

  private _badge(name: string, text: string): HTMLElement {
    return h(
      'div',
      {
        className: 'jp-Envpack-binderRow',
        attrs: { 'data-badge': name.toLowerCase() }
      },
      [
        h('span', { className: 'jp-Envpack-badgeName', text: `${name} ` }),
        h('code', { className: 'jp-Envpack-badgeText', text }),
        this._copyButton(`Copy ${name}`, text, `the ${name} badge`)
      ]
    );
  }

  private _copyButton(
    label: string,
    text: string,
    what: string
  ): HTMLButtonElement {
    return button(
      label,
      () => {
        this._copy(text);
        this._status.textContent = `Copied ${what}.`;
      },
      { className: 'jp-Envpack-copy', title: `Copy ${what} to the clipboard` }
    );
  }

  private async _write(): Promise<void> {
    const path = this.model.path;
    if (!path) {
      return;
    }
    this._writing = true;
    this._status.textContent = 'Writing binder/…';
    this.render();
    try {
      const result = await this.model.client.writeBinder(path);
      const removed = result.removed.length
        ? `; removed ${result.removed.join(', ')}`
        : '';
      this._status.textContent = `Wrote ${result.written.join(', ')}${removed}. Commit and push them.`;
    } catch (err) {
      this._status.textContent = `Could not write binder/: ${errorMessage(err)}`;
    } finally {
      this._writing = false;
    }
    if (this.model.path === path) {
      await this.load(); // the warnings change (binder/ is now there, uncommitted)
    }
  }

  private _copy: (text: string) => void;
  private _writeButton: HTMLButtonElement;
  private _status: HTMLElement;
  private _info: IBinderInfo | null = null;
  private _error = '';
  private _loadedPath: string | null = null;
  private _ticket = 0;
  private _writing = false;
}

export namespace ShareSection {
  export interface IOptions {
    model: EnvpackModel;
    rank?: number;
    /**
     * Put text on the clipboard (default: JupyterLab's `Clipboard.copyToSystem`).
     */
    copy?: (text: string) => void;
  }
}

/**
 * One warning with its fix.
 */
export function renderWarning(warning: IWarning): HTMLElement {
  return h(
    'li',
    { className: 'jp-Envpack-warning', attrs: { 'data-code': warning.code } },
    [
      h('div', {
        className: 'jp-Envpack-warningMessage',
        text: warning.message
      }),
      warning.hint
        ? h('div', {
            className: 'jp-Envpack-hint',
            text: `Fix: ${warning.hint}`
          })
        : null
    ]
  );
}
