/**
 * Dockerfile: read-only preview, copy to the clipboard, save beside the notebook.
 */
import { Clipboard } from '@jupyterlab/apputils';

import { errorMessage } from '../api';
import { EnvpackModel } from '../model';
import { clear, errorBox, h } from './dom';
import { EnvpackSection, toolbarButton } from './section';

export class DockerfileSection extends EnvpackSection {
  constructor(options: DockerfileSection.IOptions) {
    super({ label: 'Dockerfile', rank: 20, ...options });
    this._save = options.saveFile;
    this.addAction(
      'copy',
      toolbarButton({
        label: 'Copy',
        onClick: () => this._copy(),
        tooltip: 'Copy the Dockerfile to the clipboard'
      })
    );
    this.addAction(
      'save',
      toolbarButton({
        label: 'Save',
        onClick: () => void this._saveFile(),
        tooltip: "Save the Dockerfile in the notebook's folder"
      })
    );
    this._status = h('div', {
      className: 'jp-Envpack-note',
      attrs: { 'aria-live': 'polite' }
    });
  }

  protected watches(kind: EnvpackModel.ChangeKind): boolean {
    return kind === 'path' || kind === 'dockerfile';
  }

  render(): void {
    clear(this.body);
    const { path, dockerfile, dockerfileError } = this.model;
    if (!path) {
      this.body.appendChild(
        h('p', { className: 'jp-Envpack-empty', text: 'Open a notebook.' })
      );
      return;
    }
    if (dockerfileError) {
      this.body.appendChild(errorBox(dockerfileError));
    } else if (dockerfile === null) {
      this.body.appendChild(
        h('p', { className: 'jp-Envpack-loading', text: 'Rendering…' })
      );
    } else {
      this.body.appendChild(
        h('pre', {
          className: 'jp-Envpack-dockerfile',
          text: dockerfile,
          // A named, focusable scrolling region (keyboard users can scroll it).
          attrs: { 'aria-label': 'Dockerfile', tabindex: '0' }
        })
      );
    }
    this.body.appendChild(this._status);
  }

  private _copy(): void {
    if (this.model.dockerfile !== null) {
      Clipboard.copyToSystem(this.model.dockerfile);
      this._status.textContent = 'Copied.';
    }
  }

  private async _saveFile(): Promise<void> {
    const { path, dockerfile } = this.model;
    if (!path || dockerfile === null) {
      return;
    }
    const folder = path.includes('/')
      ? path.slice(0, path.lastIndexOf('/'))
      : '';
    const target = folder ? `${folder}/Dockerfile` : 'Dockerfile';
    try {
      const saved = await this._save(target, dockerfile);
      if (saved) {
        this._status.textContent = `Saved ${target}.`;
      }
    } catch (err) {
      this._status.textContent = `Could not save ${target}: ${errorMessage(err)}`;
    }
  }

  private _save: DockerfileSection.SaveFile;
  private _status: HTMLElement;
}

export namespace DockerfileSection {
  /**
   * Write a text file (asking before overwriting); resolves `false` when the user declined.
   */
  export type SaveFile = (path: string, content: string) => Promise<boolean>;

  export interface IOptions {
    model: EnvpackModel;
    saveFile: SaveFile;
    rank?: number;
  }
}
