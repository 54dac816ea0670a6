/**
 * Say when an operation changes state or ends: in a polite live region (screen readers), and
 * through a callback (a JupyterLab notification) when it ends while the sidebar is hidden.
 */
import { IDisposable } from '@lumino/disposable';

import { EnvpackModel, isTerminal } from '../model';
import { IOperation, IRunResult } from '../tokens';
import { h } from './dom';
import { reportVerdict } from './run';

const VERDICT_WORDS = {
  reproduced: 'reproduced',
  'not-reproduced': 'not reproduced',
  'nothing-to-compare': 'nothing to compare'
};

/**
 * "Run of nb.ipynb succeeded: reproduced." (the verdict only for reruns with a report).
 */
export function outcomeText(op: IOperation): string {
  const kind = op.kind.charAt(0).toUpperCase() + op.kind.slice(1);
  const report = (op.result as IRunResult | null | undefined)?.report;
  const verdict = report ? `: ${VERDICT_WORDS[reportVerdict(report)]}` : '';
  return `${kind} of ${op.path} ${op.state}${op.state === 'succeeded' ? verdict : ''}.`;
}

export class Announcer implements IDisposable {
  constructor(
    private readonly _model: EnvpackModel,
    private readonly _onEnded: (op: IOperation, text: string) => void
  ) {
    this.node = h('div', {
      className: 'jp-Envpack-liveRegion',
      attrs: { role: 'status', 'aria-live': 'polite', 'aria-atomic': 'true' }
    });
    _model.operationChanged.connect(this._onOperation, this);
  }

  readonly node: HTMLElement;

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    this._isDisposed = true;
    this._model.operationChanged.disconnect(this._onOperation, this);
  }

  private _onOperation(_: EnvpackModel, op: IOperation): void {
    const before = this._states.get(op.id);
    this._states.set(op.id, op.state);
    // Operations first seen finished (the history after a reload) are not news.
    if (before === op.state || (before === undefined && isTerminal(op))) {
      return;
    }
    const text = outcomeText(op);
    this.node.textContent = text;
    if (isTerminal(op)) {
      this._onEnded(op, text);
    }
  }

  private _states = new Map<string, string>();
  private _isDisposed = false;
}
