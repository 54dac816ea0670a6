/**
 * The base of the sections that start and show one kind of operation (Build, Run, and later the
 * cluster's Submit): a start button, the latest operation of that kind for the current notebook
 * (state, progress, log, cancel), and a result area.
 */
import { errorMessage } from '../api';
import { EnvpackModel } from '../model';
import { IOperation } from '../tokens';
import { button, clear, h, openDetails, reopenDetails } from './dom';
import { OperationView } from './operation';
import { EnvpackSection } from './section';

export abstract class OperationSection extends EnvpackSection {
  constructor(options: OperationSection.IOptions) {
    super(options);
    this.kind = options.kind;
    this._needsEngine = options.needsEngine ?? false;
    this.startButton = button(options.buttonLabel, () => void this._start(), {
      accept: true,
      className: options.buttonClass,
      title: options.buttonTitle
    });
    this._buttonTitle = options.buttonTitle;
    this.error = h('div', {
      className: 'jp-Envpack-error',
      attrs: { role: 'alert' }
    });
    this.result = h('div', { className: 'jp-Envpack-result' });
    this.view = new OperationView(this.model, { logOpen: options.logOpen });
    this._why = h('div', {
      className: 'jp-Envpack-note jp-Envpack-disabledReason',
      attrs: { id: `jp-Envpack-why-${options.kind}-${++whyIds}` }
    });
    this.startButton.setAttribute('aria-describedby', this._why.id);
    this.body.append(
      h('div', { className: 'jp-Envpack-row' }, [this.startButton]),
      this._why,
      this.error,
      this.view.node,
      this.result
    );
    this.model.operationChanged.connect(this._onOperation, this);
  }

  /**
   * The operation kind this section starts and shows.
   */
  readonly kind: string;

  protected readonly startButton: HTMLButtonElement;
  protected readonly error: HTMLElement;
  protected readonly result: HTMLElement;
  protected readonly view: OperationView;

  /**
   * Start the operation (throw to show a message instead).
   */
  protected abstract start(): Promise<unknown>;

  /**
   * Fill `this.result` for the operation shown (already cleared).
   */
  protected abstract renderResult(op: IOperation | null): void;

  protected watches(kind: EnvpackModel.ChangeKind): boolean {
    return (
      kind === 'path' ||
      kind === 'operations' ||
      kind === 'settings' ||
      kind === 'status'
    );
  }

  /**
   * The operation shown: the latest of this section's kind for the current notebook.
   */
  protected shown(): IOperation | null {
    return this.model.latest(this.kind);
  }

  render(): void {
    const op = this.shown();
    const why = this.disabledReason();
    this.startButton.disabled = why !== null;
    this.startButton.title = why ?? this._buttonTitle;
    // Say why in the sidebar too, not only in a tooltip (starting is visible on the operation).
    this._why.textContent = why && !this._starting ? why : '';
    this._why.hidden = !this._why.textContent;
    this.error.hidden = !this.error.textContent;
    this.view.setOperation(op);
    // The same operation drawn again (its last events arriving): what the user opened stays open.
    const keep = op && op.id === this._drawn ? openDetails(this.result) : [];
    clear(this.result);
    this.renderResult(op);
    reopenDetails(this.result, keep);
    this._drawn = op?.id ?? null;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.view.dispose();
    this.model.operationChanged.disconnect(this._onOperation, this);
    super.dispose();
  }

  /**
   * Why the start button is disabled, or `null` when it is enabled.
   */
  protected disabledReason(): string | null {
    if (!this.model.path) {
      return 'Disabled: open a notebook first.';
    }
    if (this._starting) {
      return 'Starting…';
    }
    if (this._needsEngine && !this.model.engineAvailable) {
      return ENGINE_DOWN;
    }
    return null;
  }

  private _onOperation(_: EnvpackModel, op: IOperation): void {
    if (
      op.kind === this.kind &&
      op.path === this.model.path &&
      this.isAttached
    ) {
      this.render();
    }
  }

  private async _start(): Promise<void> {
    this.error.textContent = '';
    this._starting = true;
    this.render();
    try {
      await this.start();
    } catch (err) {
      this.error.textContent = errorMessage(err);
    } finally {
      this._starting = false;
      this.render();
    }
  }

  private _drawn: string | null = null;
  private _starting = false;
  private _why: HTMLElement;
  private _needsEngine: boolean;
  private _buttonTitle: string;
}

let whyIds = 0;

/**
 * Why the Build and Run buttons are disabled when the server has no Docker engine.
 */
export const ENGINE_DOWN =
  "Disabled: the server's Docker engine is not reachable (snapshot, Dockerfile and Binder still work).";

export namespace OperationSection {
  export interface IOptions {
    model: EnvpackModel;
    label: string;
    rank?: number;
    kind: string;
    buttonLabel: string;
    buttonTitle: string;
    buttonClass?: string;
    logOpen?: boolean;
    /**
     * The operation needs the server's Docker engine: the button is disabled while it is down.
     */
    needsEngine?: boolean;
  }
}
