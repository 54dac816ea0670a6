/**
 * The base class of every section of the envpack sidebar.
 *
 * A section is a JupyterLab `PanelWithToolbar`: in the sidebar's accordion its title (name,
 * collapse caret) and its toolbar (action buttons, see `toolbarButton`) form the section's
 * header, and its node holds a body it re-renders when the model changes. New sections (Share,
 * Cluster, ...) subclass it and are added with `IEnvpackSidebar.addSection` (see
 * labextension/README.md).
 */
import {
  LabIcon,
  PanelWithToolbar,
  ToolbarButton,
  ToolbarButtonComponent
} from '@jupyterlab/ui-components';
import { AccordionPanel, Widget } from '@lumino/widgets';
import * as React from 'react';

import { EnvpackModel } from '../model';
import { h } from './dom';

export abstract class EnvpackSection extends PanelWithToolbar {
  constructor(options: EnvpackSection.IOptions) {
    super();
    this.model = options.model;
    this.rank = options.rank ?? 100;
    this.addClass('jp-Envpack-section');
    this.title.label = options.label;
    const name = options.label.replace(/\W+/g, '');
    this.addClass(`jp-Envpack-section-${name}`);
    // The accordion's title (outside this node) is addressed by these (see SectionRenderer).
    this.title.className = `jp-Envpack-sectionTitle jp-Envpack-sectionTitle-${name}`;
    this.node.dataset.section = name.toLowerCase();
    this.id = `jp-Envpack-section-${name}-${++sectionIds}`;
    this.toolbar.addClass('jp-Envpack-sectionActions');
    this.toolbar.node.setAttribute('aria-label', `${options.label} actions`);
    this.body = h('div', { className: 'jp-Envpack-sectionBody' });
    this.node.appendChild(this.body);
    this.model.changed.connect(this._onModelChanged, this);
  }

  readonly model: EnvpackModel;

  /**
   * Sections are ordered by rank, smallest first.
   */
  readonly rank: number;

  /**
   * Where subclasses render their content.
   */
  protected readonly body: HTMLElement;

  /**
   * Whether the section is folded away (its accordion title stays).
   */
  get collapsed(): boolean {
    return this.isHidden;
  }

  set collapsed(value: boolean) {
    if (value === this.collapsed) {
      return;
    }
    const parent = this.parent;
    if (parent instanceof AccordionPanel) {
      const index = parent.widgets.indexOf(this);
      if (value) {
        parent.collapse(index);
      } else {
        parent.expand(index);
      }
    } else {
      this.setHidden(value);
    }
  }

  /**
   * Add an action to the section's header (a JupyterLab toolbar button, or any widget).
   */
  protected addAction(name: string, item: Widget): void {
    this.toolbar.addItem(name, item);
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
    super.dispose(); // first: the accordion takes the toolbar out of its title
    this.toolbar.dispose();
  }

  private _onModelChanged(
    _: EnvpackModel,
    kind: EnvpackModel.ChangeKind
  ): void {
    if (this.watches(kind) && this.isAttached) {
      this.render();
    }
  }
}

let sectionIds = 0;

/**
 * The options of a header action.
 */
export interface IActionOptions {
  onClick: () => void;
  /**
   * The tooltip, and the accessible name of an icon button.
   */
  tooltip: string;
  icon?: LabIcon;
  label?: string;
  className?: string;
}

/**
 * A JupyterLab toolbar button that is not a toggle: `ToolbarButton` always renders
 * `aria-pressed`, which axe-core reports as not allowed on its `jp-button` (aria-allowed-attr).
 */
export class ActionButton extends ToolbarButton {
  constructor(private _options: IActionOptions) {
    super(_options);
  }

  render(): JSX.Element {
    return React.createElement(ToolbarButtonComponent, {
      ...this._options,
      enabled: this.enabled,
      pressed: undefined
    });
  }
}

/**
 * A header action: an icon button named by `tooltip`, or a text button when `label` is given.
 */
export function toolbarButton(options: IActionOptions): ToolbarButton {
  return new ActionButton(options);
}

/**
 * A header widget that is not a button (a filter checkbox): keys and clicks stay its own, the
 * accordion title it sits in would otherwise toggle the section on Space or Enter.
 */
export function headerWidget(node: HTMLElement): Widget {
  const widget = new Widget({ node });
  for (const type of ['keydown', 'click']) {
    node.addEventListener(type, event => event.stopPropagation());
  }
  return widget;
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
