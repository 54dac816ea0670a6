/**
 * The envpack sidebar: JupyterLab's `SidePanel`, a header naming the followed notebook, then an
 * accordion of sections (each a `PanelWithToolbar` whose toolbar sits in its title).
 *
 * Sections are ordered by rank; other plugins add theirs through `IEnvpackSidebar`.
 */
import { AccordionToolbar, SidePanel } from '@jupyterlab/ui-components';
import { AccordionPanel, Panel, Title, Widget } from '@lumino/widgets';

import { EnvpackClient } from '../api';
import { EnvpackModel } from '../model';
import { IEnvpackSidebar, IOperation, ISectionOptions } from '../tokens';
import { Announcer } from './announce';
import { describeError } from './operation';
import { clear, errorBox, h } from './dom';

export class EnvpackSidebar extends SidePanel implements IEnvpackSidebar {
  constructor(options: EnvpackSidebar.IOptions) {
    super({ content: new SectionAccordion(), header: new Panel() });
    this.model = options.model;
    this.client = options.client;
    this.id = 'jp-envpack-sidebar';
    this.addClass('jp-Envpack-sidebar');
    this.content.addClass('jp-Envpack-sections');
    this._heading = h('div', { className: 'jp-Envpack-heading' });
    this._announcer = new Announcer(this.model, (op, text) => {
      if (!this.isVisible) {
        options.notify?.(op, text);
      }
    });
    this.header.node.append(this._heading, this._announcer.node);
    this.header.addClass('jp-Envpack-header');
    this.model.changed.connect(this._renderHeading, this);
    this._renderHeading();
  }

  readonly model: EnvpackModel;
  readonly client: EnvpackClient;

  addSection(section: Widget, options: ISectionOptions = {}): void {
    const rank =
      options.rank ?? (section as Widget & { rank?: number }).rank ?? 100;
    this._ranks.set(section, rank);
    const index = this.widgets.findIndex(
      w => (this._ranks.get(w) ?? 100) > rank
    );
    this.content.insertWidget(
      index === -1 ? this.widgets.length : index,
      section
    );
    (this.content as SectionAccordion).arrange();
    section.disposed.connect(() => this._ranks.delete(section));
  }

  reveal(section?: Widget): void {
    this.show();
    if (section) {
      (this.content as SectionAccordion).enlarge(section);
    }
  }

  dispose(): void {
    this._announcer.dispose();
    this.model.changed.disconnect(this._renderHeading, this);
    super.dispose();
  }

  private _renderHeading(): void {
    clear(this._heading);
    const path = this.model.path;
    this._heading.append(
      h('div', { className: 'jp-Envpack-title', text: 'Envpack' }),
      h('div', {
        className: 'jp-Envpack-notebook',
        text: path ?? 'No notebook',
        title: path ?? 'Open a notebook to see its environment'
      })
    );
    for (const problem of statusProblems(this.model)) {
      this._heading.appendChild(errorBox(problem));
    }
  }

  private _heading: HTMLElement;
  private _announcer: Announcer;
  private _ranks = new Map<Widget, number>();
}

/**
 * A section's accordion title: JupyterLab's (caret, name, the section's toolbar), with the caret and
 * the name wrapped in a `button` that carries `aria-expanded` (a heading may not, axe-core's
 * aria-allowed-attr), and the section's `title.className` (`.jp-Envpack-sectionTitle-<Name>`).
 */
class SectionRenderer extends AccordionToolbar.Renderer {
  createSectionTitle(data: Title<Widget>): HTMLElement {
    const handle = super.createSectionTitle(data);
    // One tab stop per title: the toggle; arrow keys still move between titles.
    handle.setAttribute('tabindex', '-1');
    handle.classList.add(...data.className.split(/\s+/).filter(Boolean));
    const toggle = h('span', {
      className: 'jp-Envpack-sectionToggle',
      attrs: { role: 'button', tabindex: '0' }
    });
    toggle.append(...Array.from(handle.childNodes));
    handle.appendChild(toggle);
    // Lumino's arrow keys, Home and End focus the title: hand the focus on to its toggle.
    handle.addEventListener('focus', () => toggle.focus());
    return handle;
  }
}

/**
 * The sections' accordion: keeps the DOM (reading and tab order) in the sections' order (Lumino
 * appends a new section's nodes last) and moves Lumino's `aria-expanded` from the title to its
 * toggle.
 */
class SectionAccordion extends AccordionPanel {
  constructor() {
    const renderer = new SectionRenderer();
    super({ renderer, layout: AccordionToolbar.createLayout({ renderer }) });
    this.expansionToggled.connect(this.syncToggles, this);
  }

  /**
   * Unfold a section and give it half the height (the other unfolded ones share the rest): the
   * accordion splits the height evenly, too little for a report under eight sections.
   */
  enlarge(section: Widget): void {
    const index = this.widgets.indexOf(section);
    if (index === -1) {
      return;
    }
    if (section.isHidden) {
      this.expand(index);
    }
    const others = this.widgets.filter(w => w !== section && !w.isHidden);
    if (others.length) {
      const rest = 0.5 / others.length;
      this.setRelativeSizes(
        this.widgets.map(w => (w === section ? 0.5 : w.isHidden ? 0 : rest))
      );
    }
  }

  /**
   * Put each section's title, node and handle in order, then sync the toggles.
   */
  arrange(): void {
    this.widgets.forEach((section, index) => {
      this.node.append(this.titles[index], section.node, this.handles[index]);
    });
    this.syncToggles();
  }

  syncToggles(): void {
    this.titles.forEach((title, index) => {
      const section = this.widgets[index];
      title.removeAttribute('aria-expanded');
      const toggle = title.querySelector('.jp-Envpack-sectionToggle');
      toggle?.setAttribute('aria-expanded', String(!section.isHidden));
      toggle?.setAttribute('aria-controls', section.id);
    });
  }
}

export namespace EnvpackSidebar {
  export interface IOptions {
    model: EnvpackModel;
    client: EnvpackClient;
    /**
     * Called when an operation ends while the sidebar is hidden (a JupyterLab notification).
     */
    notify?: (op: IOperation, text: string) => void;
  }
}

/**
 * What the user should know about the server side: unreachable server, Docker engine down,
 * operations database unusable.
 */
export function statusProblems(model: EnvpackModel): string[] {
  const problems: string[] = [];
  if (model.statusError) {
    problems.push(model.statusError);
  }
  const status = model.status;
  if (status?.engine && status.engine.reachable === false) {
    const why = describeError(status.engine.error ?? null) || 'unknown error';
    // The server's message usually names the problem already; do not say it twice.
    problems.push(
      /docker engine/i.test(why) ? why : `Docker engine not reachable: ${why}`
    );
  }
  if (status?.degraded) {
    problems.push(`Operations history unavailable: ${status.degraded}`);
  }
  return problems;
}
