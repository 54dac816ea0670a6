/**
 * Run: rerun the notebook in its image with optional parameters, then show the report cell by cell
 * (same / differs with the diff / error) and a link that opens the executed notebook.
 */
import { EnvpackModel } from '../model';
import { ICellResult, IOperation, IReport, IRunResult } from '../tokens';
import { renderImage } from './build';
import { h } from './dom';
import { OperationSection } from './opsection';

export class RunSection extends OperationSection {
  constructor(options: RunSection.IOptions) {
    super({
      label: 'Run',
      rank: 40,
      kind: 'run',
      needsEngine: true,
      buttonLabel: 'Rerun in container',
      buttonTitle: 'Build if needed, execute the notebook in its image and compare the outputs',
      buttonClass: 'jp-Envpack-runButton',
      ...options
    });
    this._open = options.openPath;
    this._params = h('textarea', {
      className: 'jp-Envpack-parameters',
      title: 'One parameter per line: name = value (JSON, else a string), like papermill -p',
      attrs: { rows: '2', placeholder: 'parameters, e.g. n = 3', spellcheck: 'false' }
    });
    this.body.insertBefore(this._params, this.body.firstChild);
  }

  protected start(): Promise<unknown> {
    const parameters = parseParameters(this._params.value);
    return this.model.run(this.model.path, { parameters });
  }

  protected renderResult(op: IOperation | null): void {
    const result = op?.result as IRunResult | null | undefined;
    if (result?.build?.image) {
      this.result.appendChild(h('div', { className: 'jp-Envpack-row' }, renderImage(result.build)));
    }
    if (result?.report) {
      this.result.append(...renderReport(result.report, result.output_path, this._open));
    }
  }

  private _open: (path: string) => void;
  private _params: HTMLTextAreaElement;
}

export namespace RunSection {
  export interface IOptions {
    model: EnvpackModel;
    /**
     * Open a file of the server's contents (the executed notebook).
     */
    openPath: (path: string) => void;
    rank?: number;
  }
}

/**
 * Parse `name = value` lines: the value is JSON when it parses, else the string (papermill's -p).
 */
export function parseParameters(text: string): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) {
      return;
    }
    const eq = line.indexOf('=');
    const name = (eq === -1 ? '' : line.slice(0, eq)).trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new Error(`Parameter line ${i + 1}: write "name = value" with a Python identifier.`);
    }
    const value = line.slice(eq + 1).trim();
    try {
      result[name] = JSON.parse(value);
    } catch {
      result[name] = value;
    }
  });
  return result;
}

/**
 * A readable one-line summary of a report.
 */
export function summaryText(report: IReport): string {
  if (typeof report.summary === 'string') {
    return report.summary;
  }
  return Object.entries(report.summary ?? {})
    .map(([status, count]) => `${count} ${status}`)
    .join(', ');
}

/**
 * The DOM of a run result: verdict, summary, one row per cell, the executed notebook link.
 */
export function renderReport(
  report: IReport,
  outputPath: string | null,
  open: (path: string) => void
): HTMLElement[] {
  const verdict = report.reproduced ? 'Reproduced' : 'Not reproduced';
  const nodes: HTMLElement[] = [
    h('div', {
      className: `jp-Envpack-verdict ${report.reproduced ? 'jp-mod-success' : 'jp-mod-failure'}`,
      text: verdict
    }),
    h('div', { className: 'jp-Envpack-note', text: summaryText(report) }),
    h('ul', { className: 'jp-Envpack-cells' }, report.cells.map(renderCell))
  ];
  if (outputPath) {
    nodes.push(openOutputLink(outputPath, open));
  }
  return nodes;
}

/**
 * A row with an "Open <path>" link that opens a notebook of the server's contents.
 */
export function openOutputLink(path: string, open: (path: string) => void): HTMLElement {
  const link = h('a', {
    className: 'jp-Envpack-openOutput',
    text: `Open ${path}`,
    attrs: { href: '#' }
  });
  link.addEventListener('click', event => {
    event.preventDefault();
    open(path);
  });
  return h('div', { className: 'jp-Envpack-row' }, [link]);
}

function renderCell(cell: ICellResult): HTMLElement {
  const detail = cell.ename ? `${cell.ename}: ${cell.evalue ?? ''}` : '';
  const item = h('li', { className: 'jp-Envpack-cell', attrs: { 'data-status': cell.status } }, [
    h('span', { className: 'jp-Envpack-cellIndex', text: `Cell ${cell.index}` }),
    h('span', { className: `jp-Envpack-badge jp-Envpack-cell-${cell.status}`, text: cell.status }),
    detail ? h('div', { className: 'jp-Envpack-cellError', text: detail }) : null
  ]);
  if (cell.diff) {
    item.appendChild(
      h('details', { className: 'jp-Envpack-diff' }, [
        h('summary', { text: 'diff' }),
        h('pre', { text: cell.diff })
      ])
    );
  }
  return item;
}
