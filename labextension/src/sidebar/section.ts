/**
 * The base class of every section of the envpack sidebar.
 *
 * A section is a Lumino widget with a collapsible header (title + action buttons) and a body it
 * re-renders when the model changes. New sections (Share, Cluster, ...) subclass it and are added
 * with `IEnvpackSidebar.addSection` (see labextension/README.md).
 */
import { Widget } from '@lumino/widgets';

import { EnvpackModel } from '../model';
import { h } from './dom';

export abstract class EnvpackSection extends Widget {
  constructor(options: EnvpackSection.IOptions) {
    super();
    this.model = options.model;
    this.rank = options.rank ?? 100;
    this.addClass('jp-Envpack-section');
    this.title.label = options.label;
    const name = options.label.replace(/\W+/g, '');
    this.addClass(`jp-Envpack-section-${name}`);
    this.node.dataset.section = name.toLowerCase();
    this._toggle = h('button', {
      className: 'jp-Envpack-sectionToggle',
      text: options.label,
      attrs: { type: 'button', 'aria-expanded': 'true' }
    });
    this._toggle.addEventListener('click', () => {
      this.collapsed = !this.collapsed;
    });
    this.actions = h('div', { className: 'jp-Envpack-sectionActions' });
    this.body = h('div', { className: 'jp-Envpack-sectionBody' });
    this.node.appendChild(
      h('div', { className: 'jp-Envpack-sectionHeader' }, [
        this._toggle,
        this.actions
      ])
    );
    this.node.appendChild(this.body);
    this.model.changed.connect(this._onModelChanged, this);
  }

  readonly model: EnvpackModel;

  /**
   * Sections are ordered by rank, smallest first.
   */
  readonly rank: number;

  /**
   * Where subclasses put their action buttons (shown in the header).
   */
  protected readonly actions: HTMLElement;

  /**
   * Where subclasses render their content.
   */
  protected readonly body: HTMLElement;

  get collapsed(): boolean {
    return this.hasClass('jp-mod-collapsed');
  }

  set collapsed(value: boolean) {
    this.toggleClass('jp-mod-collapsed', value);
    this._toggle.setAttribute('aria-expanded', String(!value));
  }

  /**
   * Render the body from the model.
   */
  abstract render(): void;

  /**
   * The model changes this section re-renders on.
   */
  protected watches(kind: EnvpackModel.ChangeKind): boolean {
    return true;
  }

  protected onAfterAttach(): void {
    this.render();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.model.changed.disconnect(this._onModelChanged, this);
    super.dispose();
  }

  private _onModelChanged(
    _: EnvpackModel,
    kind: EnvpackModel.ChangeKind
  ): void {
    if (this.watches(kind) && this.isAttached) {
      this.render();
    }
  }

  private _toggle: HTMLButtonElement;
}

export namespace EnvpackSection {
  export interface IOptions {
    model: EnvpackModel;
    /**
     * The title shown in the header.
     */
    label: string;
    rank?: number;
  }
}
