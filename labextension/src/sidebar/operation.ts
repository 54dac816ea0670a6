/**
 * The view of one operation: state, stage, progress bar, error, cancel button and the streamed log.
 *
 * Shared by the Build, Run and History sections. The log is appended as text nodes as lines arrive,
 * so a long build does not re-render the whole log for each line.
 */
import { IDisposable } from '@lumino/disposable';

import { errorMessage } from '../api';
import { EnvpackModel, isTerminal } from '../model';
import { IErrorInfo, IOperation } from '../tokens';
import { button, clear, h } from './dom';

export class OperationView implements IDisposable {
  constructor(model: EnvpackModel, options: OperationView.IOptions = {}) {
    this._model = model;
    this.node = h('div', { className: 'jp-Envpack-operation' });
    this._state = h('span', { className: 'jp-Envpack-state' });
    this._stage = h('span', { className: 'jp-Envpack-stage' });
    this._cancel = button('Cancel', () => void this._onCancel(), {
      className: 'jp-Envpack-cancel',
      warn: true,
      title: 'Cancel this operation'
    });
    this._bar = h('div', { className: 'jp-Envpack-progressValue' });
    this._progress = h(
      'div',
      {
        className: 'jp-Envpack-progress',
        attrs: {
          role: 'progressbar',
          'aria-valuemin': '0',
          'aria-valuemax': '100'
        }
      },
      [this._bar]
    );
    this._error = h('div', {
      className: 'jp-Envpack-error',
      attrs: { role: 'alert' }
    });
    this._ended = h('div', { className: 'jp-Envpack-note jp-Envpack-ended' });
    this._pre = h('pre', {
      className: 'jp-Envpack-logText',
      attrs: { 'aria-label': 'Log', tabindex: '0' }
    });
    this._summary = h('summary', { text: 'Log' });
    this._log = h('details', { className: 'jp-Envpack-log' }, [
      this._summary,
      this._pre
    ]);
    this._log.open = options.logOpen ?? false;
    this.node.append(
      h('div', { className: 'jp-Envpack-operationHeader' }, [
        this._state,
        this._stage,
        this._cancel
      ]),
      this._progress,
      this._error,
      this._ended,
      this._log
    );
    model.operationChanged.connect(this._onOperationChanged, this);
    model.logAppended.connect(this._onLog, this);
    this.setOperation(null);
  }

  readonly node: HTMLElement;

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  get operation(): IOperation | null {
    return this._op;
  }

  /**
   * Show another operation (or none).
   */
  setOperation(op: IOperation | null): void {
    const changedId = op?.id !== this._op?.id;
    this._op = op;
    this.node.hidden = op === null;
    if (!op) {
      return;
    }
    this.node.dataset.state = op.state;
    this.node.dataset.operation = op.id;
    this._state.textContent = op.state;
    this._state.className = `jp-Envpack-state jp-Envpack-state-${op.state}`;
    // A finished operation has no current stage: "wheels fetching…" after a cancel is stale.
    this._stage.textContent = isTerminal(op) ? '' : stageText(op);
    this._progress.setAttribute('aria-label', `${op.kind} progress`);
    this._cancel.hidden = isTerminal(op);
    this._cancel.disabled = false;
    this._renderProgress(op);
    // The user's own cancel is an outcome, not an error: a neutral note.
    const cancelled = op.state === 'cancelled';
    const error = cancelled ? '' : describeError(op.error);
    this._error.textContent = error;
    this._error.hidden = !error;
    this._ended.textContent = cancelled
      ? `Cancelled${op.stage ? ` during ${op.stage}` : ''}.`
      : '';
    this._ended.hidden = !cancelled;
    if (changedId) {
      this._renderLog();
      this._replayLog(op);
    }
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._model.operationChanged.disconnect(this._onOperationChanged, this);
    this._model.logAppended.disconnect(this._onLog, this);
    this.node.remove();
  }

  private _renderProgress(op: IOperation): void {
    const running = !isTerminal(op);
    const value =
      typeof op.progress === 'number'
        ? Math.max(0, Math.min(1, op.progress))
        : null;
    this._progress.hidden = !running && op.state !== 'succeeded';
    this._progress.classList.toggle(
      'jp-mod-indeterminate',
      running && value === null
    );
    const percent =
      op.state === 'succeeded' ? 100 : Math.round((value ?? 0) * 100);
    this._bar.style.width = `${percent}%`;
    this._progress.setAttribute('aria-valuenow', String(percent));
  }

  /**
   * A finished operation seen after a page load was never followed: fetch its log once.
   */
  private _replayLog(op: IOperation): void {
    if (
      isTerminal(op) &&
      !this._model.log(op.id).length &&
      !this._replayed.has(op.id)
    ) {
      this._replayed.add(op.id);
      void this._model.follow(op.id);
    }
  }

  private _renderLog(): void {
    clear(this._pre);
    const lines = this._op ? this._model.log(this._op.id) : [];
    this._lines = lines.length;
    if (lines.length) {
      this._pre.appendChild(document.createTextNode(lines.join('\n') + '\n'));
    }
    this._updateSummary();
  }

  private _onLog(_: EnvpackModel, chunk: EnvpackModel.ILogChunk): void {
    if (!this._op || chunk.id !== this._op.id) {
      return;
    }
    const atBottom =
      this._pre.scrollTop + this._pre.clientHeight >=
      this._pre.scrollHeight - 4;
    this._pre.appendChild(
      document.createTextNode(chunk.lines.join('\n') + '\n')
    );
    this._lines += chunk.lines.length;
    if (this._lines > this._model.log(chunk.id).length + 500) {
      // The model dropped old lines: re-render from it so the DOM stays bounded too.
      this._renderLog();
    }
    this._updateSummary();
    if (atBottom) {
      this._pre.scrollTop = this._pre.scrollHeight;
    }
  }

  private _updateSummary(): void {
    this._summary.textContent = `Log (${this._lines} line${this._lines === 1 ? '' : 's'})`;
  }

  private _onOperationChanged(_: EnvpackModel, op: IOperation): void {
    if (this._op && op.id === this._op.id) {
      this.setOperation(op);
    }
  }

  private async _onCancel(): Promise<void> {
    if (!this._op) {
      return;
    }
    this._cancel.disabled = true;
    try {
      await this._model.cancel(this._op.id);
    } catch (err) {
      this._error.textContent = `Could not cancel: ${errorMessage(err)}`;
      this._error.hidden = false;
      this._cancel.disabled = false;
    }
  }

  private _model: EnvpackModel;
  private _op: IOperation | null = null;
  private _isDisposed = false;
  private _lines = 0;
  private _state: HTMLElement;
  private _stage: HTMLElement;
  private _cancel: HTMLButtonElement;
  private _progress: HTMLElement;
  private _bar: HTMLElement;
  private _error: HTMLElement;
  private _ended: HTMLElement;
  private _replayed = new Set<string>();
  private _log: HTMLDetailsElement;
  private _summary: HTMLElement;
  private _pre: HTMLElement;
}

export namespace OperationView {
  export interface IOptions {
    /**
     * Whether the log starts expanded.
     */
    logOpen?: boolean;
  }
}

/**
 * "stage message" of a running operation.
 */
function stageText(op: IOperation): string {
  return op.stage || op.message
    ? `${op.stage ?? ''} ${op.message ?? ''}`.trim()
    : '';
}

/**
 * The readable form of an operation's error (message, then the hint).
 */
export function describeError(
  error: IErrorInfo | string | null | undefined
): string {
  if (!error) {
    return '';
  }
  if (typeof error === 'string') {
    return error;
  }
  return error.hint ? `${error.message}\n${error.hint}` : error.message;
}
