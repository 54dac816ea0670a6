/**
 * History: every build and run the server remembers (it survives page reloads), with state and log.
 */
import { refreshIcon } from '@jupyterlab/ui-components';

import { errorMessage } from '../api';
import { EnvpackModel, isTerminal } from '../model';
import { IOperation } from '../tokens';
import { clear, errorBox, formatTime, h } from './dom';
import { OperationView } from './operation';
import { EnvpackSection, headerWidget, toolbarButton } from './section';

export class HistorySection extends EnvpackSection {
  constructor(options: HistorySection.IOptions) {
    super({ label: 'History', rank: 50, ...options });
    this._onlyCurrent = h('input', {
      attrs: { type: 'checkbox', 'aria-label': 'History of this notebook only' }
    });
    this._onlyCurrent.checked = true;
    this._onlyCurrent.addEventListener('change', () => this.render());
    this.addAction(
      'filter',
      headerWidget(
        h(
          'label',
          {
            className: 'jp-Envpack-filter',
            title: 'Only the current notebook'
          },
          [this._onlyCurrent, document.createTextNode('this notebook')]
        )
      )
    );
    this.addAction(
      'refresh',
      toolbarButton({
        icon: refreshIcon,
        onClick: () => void this._refresh(),
        tooltip: 'Refresh history: reload it from the server'
      })
    );
  }

  protected watches(kind: EnvpackModel.ChangeKind): boolean {
    return kind === 'path' || kind === 'operations';
  }

  render(): void {
    for (const view of this._views.values()) {
      view.dispose();
    }
    this._views.clear();
    clear(this.body);
    if (this._error) {
      this.body.appendChild(errorBox(this._error));
    }
    const ops = this.model.operations.filter(
      op => !this._onlyCurrent.checked || op.path === this.model.path
    );
    if (!ops.length) {
      this.body.appendChild(
        h('p', { className: 'jp-Envpack-empty', text: 'Nothing yet.' })
      );
      return;
    }
    this.body.appendChild(
      h(
        'ul',
        { className: 'jp-Envpack-history' },
        // A list holds list items only (axe-core: list)
        ops.map(op => h('li', {}, [this._item(op)]))
      )
    );
  }

  dispose(): void {
    for (const view of this._views.values()) {
      view.dispose();
    }
    super.dispose();
  }

  private _item(op: IOperation): HTMLElement {
    const details = h('details', { className: 'jp-Envpack-historyItem' }, [
      h('summary', {}, [
        h('span', {
          className: `jp-Envpack-state jp-Envpack-state-${op.state}`,
          text: op.state
        }),
        h('span', { className: 'jp-Envpack-kind', text: ` ${op.kind} ` }),
        h('span', { className: 'jp-Envpack-path', text: op.path }),
        h('span', {
          className: 'jp-Envpack-time',
          text: ` ${formatTime(op.created)}`
        })
      ])
    ]);
    details.dataset.operation = op.id;
    details.open = this._open.has(op.id);
    details.addEventListener('toggle', () => {
      if (details.open) {
        this._open.add(op.id);
        this._expand(op, details);
      } else {
        this._open.delete(op.id);
      }
    });
    if (details.open) {
      this._expand(op, details);
    }
    return details;
  }

  private _expand(op: IOperation, details: HTMLElement): void {
    if (this._views.has(op.id)) {
      return;
    }
    const view = new OperationView(this.model, { logOpen: true });
    view.setOperation(op);
    this._views.set(op.id, view);
    details.appendChild(view.node);
    if (!this.model.log(op.id).length || !isTerminal(op)) {
      // Finished operations replay their whole log from the event stream.
      void this.model.follow(op.id);
    }
  }

  private async _refresh(): Promise<void> {
    try {
      await this.model.refreshOperations();
      this._error = '';
    } catch (err) {
      this._error = errorMessage(err);
    }
    this.render();
  }

  private _onlyCurrent: HTMLInputElement;
  private _views = new Map<string, OperationView>();
  private _open = new Set<string>();
  private _error = '';
}

export namespace HistorySection {
  export interface IOptions {
    model: EnvpackModel;
    rank?: number;
  }
}
