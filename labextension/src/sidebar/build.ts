/**
 * Build: start a build, follow its progress and log, show the image tag ("cached" when nothing had
 * to be built), cancel.
 */
import { errorMessage } from '../api';
import { EnvpackModel } from '../model';
import { IBuildResult, IOperation } from '../tokens';
import { button, clear, h } from './dom';
import { OperationView } from './operation';
import { EnvpackSection } from './section';

export class BuildSection extends EnvpackSection {
  constructor(options: BuildSection.IOptions) {
    super({ label: 'Build', rank: 30, ...options });
    this._button = button('Build image', () => void this._build(), {
      accept: true,
      className: 'jp-Envpack-buildButton',
      title: 'Build the container image of this notebook'
    });
    this._error = h('div', { className: 'jp-Envpack-error', attrs: { role: 'alert' } });
    this._result = h('div', { className: 'jp-Envpack-result' });
    this._view = new OperationView(this.model, { logOpen: options.logOpen });
    this.body.append(
      h('div', { className: 'jp-Envpack-row' }, [this._button]),
      this._error,
      this._view.node,
      this._result
    );
    this.model.operationChanged.connect(this._onOperation, this);
  }

  protected watches(kind: EnvpackModel.ChangeKind): boolean {
    return kind === 'path' || kind === 'operations' || kind === 'settings';
  }

  render(): void {
    const op = this.model.latest('build');
    this._button.disabled = !this.model.path;
    this._error.hidden = !this._error.textContent;
    this._view.setOperation(op);
    clear(this._result);
    const result = op?.state === 'succeeded' ? (op.result as IBuildResult | null) : null;
    if (result?.image) {
      this._result.append(
        h('span', { className: 'jp-Envpack-label', text: 'Image ' }),
        h('code', { className: 'jp-Envpack-image', text: result.image }),
        result.cached ? h('span', { className: 'jp-Envpack-badge jp-Envpack-cached', text: 'cached' }) : '',
        typeof result.duration === 'number'
          ? h('span', { className: 'jp-Envpack-duration', text: ` ${result.duration.toFixed(1)} s` })
          : ''
      );
    }
  }

  dispose(): void {
    this._view.dispose();
    this.model.operationChanged.disconnect(this._onOperation, this);
    super.dispose();
  }

  private _onOperation(_: EnvpackModel, op: IOperation): void {
    if (op.kind === 'build' && op.path === this.model.path && this.isAttached) {
      this.render();
    }
  }

  private async _build(): Promise<void> {
    this._error.textContent = '';
    this._button.disabled = true;
    try {
      await this.model.build();
    } catch (err) {
      this._error.textContent = errorMessage(err);
    } finally {
      this.render();
    }
  }

  private _button: HTMLButtonElement;
  private _error: HTMLElement;
  private _result: HTMLElement;
  private _view: OperationView;
}

export namespace BuildSection {
  export interface IOptions {
    model: EnvpackModel;
    rank?: number;
    logOpen?: boolean;
  }
}
