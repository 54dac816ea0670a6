/**
 * Environment: Python version, pinned packages (requested vs pulled in), local files, warnings.
 */
import { refreshIcon } from '@jupyterlab/ui-components';

import { EnvpackModel } from '../model';
import { IPackage, ISnapshot, IWarning } from '../tokens';
import { clear, copyButton, errorBox, h } from './dom';
import {
  mostlyUnresolved,
  reconstructionNotice,
  reconstructOffer
} from './reconstruct';
import { EnvpackSection, toolbarButton } from './section';

export class EnvironmentSection extends EnvpackSection {
  constructor(options: EnvironmentSection.IOptions) {
    super({ label: 'Environment', rank: 10, ...options });
    this.addAction(
      'refresh',
      toolbarButton({
        icon: refreshIcon,
        onClick: () => void this.model.refresh(),
        tooltip:
          'Refresh environment: take the snapshot again (after installing packages or editing imports)'
      })
    );
  }

  protected watches(kind: EnvpackModel.ChangeKind): boolean {
    return kind === 'path' || kind === 'snapshot';
  }

  render(): void {
    clear(this.body);
    const { path, snapshot, snapshotError, snapshotLoading } = this.model;
    if (!path) {
      this.body.appendChild(
        h('p', { className: 'jp-Envpack-empty', text: 'Open a notebook.' })
      );
      return;
    }
    if (snapshotLoading) {
      this.body.appendChild(
        h('p', {
          className: 'jp-Envpack-loading',
          text: 'Taking the snapshot…'
        })
      );
    }
    if (snapshotError) {
      this.body.appendChild(errorBox(snapshotError));
    }
    if (snapshot && mostlyUnresolved(snapshot) && !snapshotLoading) {
      this.body.appendChild(
        reconstructOffer(
          asOf =>
            void this.model.refreshSnapshot({ reconstruct: true, as_of: asOf })
        )
      );
    }
    if (snapshot) {
      this.body.append(...renderSnapshot(snapshot));
    }
  }
}

export namespace EnvironmentSection {
  export interface IOptions {
    model: EnvpackModel;
    rank?: number;
  }
}

/**
 * The DOM of a snapshot: summary line, warnings first (they need action), packages, files.
 */
export function renderSnapshot(snapshot: ISnapshot): HTMLElement[] {
  const requested = snapshot.packages.filter(p => p.requested);
  const pulled = snapshot.packages.filter(p => !p.requested);
  const notice = reconstructionNotice(snapshot.origin, snapshot.reconstruction);
  const nodes: HTMLElement[] = notice ? [notice] : [];
  nodes.push(
    h('div', { className: 'jp-Envpack-summary' }, [
      h('span', {
        className: 'jp-Envpack-python',
        text: `Python ${snapshot.python.version}`
      }),
      h('span', {
        className: 'jp-Envpack-counts',
        text: `${requested.length} requested · ${pulled.length} pulled in`
      }),
      h('code', {
        className: 'jp-Envpack-hash',
        text: snapshot.hash.slice(0, 12),
        title: `Snapshot hash ${snapshot.hash}`
      }),
      copyButton(snapshot.hash, 'snapshot hash')
    ])
  );
  if (snapshot.warnings.length) {
    nodes.push(renderWarnings(snapshot.warnings));
  }
  nodes.push(renderPackages('Requested', requested, true));
  if (pulled.length) {
    nodes.push(renderPackages('Pulled in', pulled, false));
  }
  if (snapshot.local_files.length) {
    nodes.push(
      h('details', { className: 'jp-Envpack-files' }, [
        h('summary', { text: `Local files (${snapshot.local_files.length})` }),
        h(
          'ul',
          {},
          snapshot.local_files.map(f => h('li', { text: f }))
        )
      ])
    );
  }
  return nodes;
}

function renderPackages(
  label: string,
  packages: IPackage[],
  open: boolean
): HTMLElement {
  const rows = packages.map(p =>
    h('tr', { attrs: { 'data-package': p.name } }, [
      h('td', {
        className: 'jp-Envpack-pkgName',
        text: p.name,
        title: (p.modules ?? []).join(', ')
      }),
      h('td', { className: 'jp-Envpack-pkgVersion', text: p.version })
    ])
  );
  const details = h('details', { className: 'jp-Envpack-packages' }, [
    h('summary', { text: `${label} (${packages.length})` }),
    packages.length
      ? h('table', { className: 'jp-Envpack-table' }, [h('tbody', {}, rows)])
      : h('p', {
          className: 'jp-Envpack-empty',
          text: 'No third-party imports found.'
        })
  ]);
  details.open = open;
  return details;
}

function renderWarnings(warnings: IWarning[]): HTMLElement {
  const items = warnings.map(w =>
    h(
      'li',
      { className: 'jp-Envpack-warning', attrs: { 'data-code': w.code } },
      [
        h('div', {}, [
          h('code', { className: 'jp-Envpack-warningCode', text: w.code }),
          typeof w.cell === 'number'
            ? h('span', {
                className: 'jp-Envpack-warningCell',
                text: ` cell ${w.cell}`
              })
            : null,
          h('span', { text: ` ${w.message}` })
        ]),
        w.hint
          ? h('div', { className: 'jp-Envpack-hint', text: `Fix: ${w.hint}` })
          : null
      ]
    )
  );
  return h('div', { className: 'jp-Envpack-warnings' }, [
    h('div', {
      className: 'jp-Envpack-subtitle',
      text: `Warnings (${warnings.length})`
    }),
    h('ul', {}, items)
  ]);
}
