/**
 * Run: rerun the notebook in its image with optional parameters, then show the report cell by cell
 * (same / differs with the diff / error) and a link that opens the executed notebook.
 */
import { errorMessage } from '../api';
import { EnvpackModel } from '../model';
import { ICellResult, IOperation, IReport, IRunResult } from '../tokens';
import { button, clear, h } from './dom';
import { OperationView } from './operation';
import { EnvpackSection } from './section';

export class RunSection extends EnvpackSection {
  constructor(options: RunSection.IOptions) {
    super({ label: 'Run', rank: 40, ...options });
    this._open = options.openPath;
    this._params = h('textarea', {
      className: 'jp-Envpack-parameters jp-mod-styled',
      title: 'One parameter per line: name = value (JSON, else a string), like papermill -p',
      attrs: { rows: '2', placeholder: 'parameters, e.g. n = 3', spellcheck: 'false' }
    });
    this._button = button('Rerun in container', () => void this._run(), {
      accept: true,
      className: 'jp-Envpack-runButton',
      title: 'Execute the notebook in its image and compare the outputs'
    });
    this._error = h('div', { className: 'jp-Envpack-error', attrs: { role: 'alert' } });
    this._report = h('div', { className: 'jp-Envpack-report' });
    this._view = new OperationView(this.model);
    this.body.append(
      this._params,
      h('div', { className: 'jp-Envpack-row' }, [this._button]),
      this._error,
      this._view.node,
      this._report
    );
    this.model.operationChanged.connect(this._onOperation, this);
  }

  protected watches(kind: EnvpackModel.ChangeKind): boolean {
    return kind === 'path' || kind === 'operations';
  }

  render(): void {
    const op = this.model.latest('run');
    this._button.disabled = !this.model.path;
    this._error.hidden = !this._error.textContent;
    this._view.setOperation(op);
    clear(this._report);
    const result = op?.result as IRunResult | null | undefined;
    if (result?.report) {
      this._report.append(...renderReport(result, this._open));
    }
  }

  dispose(): void {
    this._view.dispose();
    this.model.operationChanged.disconnect(this._onOperation, this);
    super.dispose();
  }

  private _onOperation(_: EnvpackModel, op: IOperation): void {
    if (op.kind === 'run' && op.path === this.model.path && this.isAttached) {
      this.render();
    }
  }

  private async _run(): Promise<void> {
    this._error.textContent = '';
    let parameters: Record<string, unknown>;
    try {
      parameters = parseParameters(this._params.value);
    } catch (err) {
      this._error.textContent = errorMessage(err);
      this.render();
      return;
    }
    this._button.disabled = true;
    try {
      await this.model.run(this.model.path, { parameters });
    } catch (err) {
      this._error.textContent = errorMessage(err);
    } finally {
      this.render();
    }
  }

  private _open: (path: string) => void;
  private _params: HTMLTextAreaElement;
  private _button: HTMLButtonElement;
  private _error: HTMLElement;
  private _report: HTMLElement;
  private _view: OperationView;
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
export function renderReport(result: IRunResult, open: (path: string) => void): HTMLElement[] {
  const { report } = result;
  const verdict = report.reproduced ? 'Reproduced' : 'Not reproduced';
  const nodes: HTMLElement[] = [
    h('div', {
      className: `jp-Envpack-verdict ${report.reproduced ? 'jp-mod-success' : 'jp-mod-failure'}`,
      text: verdict
    }),
    h('div', { className: 'jp-Envpack-note', text: summaryText(report) }),
    h('ul', { className: 'jp-Envpack-cells' }, report.cells.map(renderCell))
  ];
  if (result.output_path) {
    const link = h('a', {
      className: 'jp-Envpack-openOutput',
      text: `Open ${result.output_path}`,
      attrs: { href: '#' }
    });
    link.addEventListener('click', event => {
      event.preventDefault();
      open(result.output_path);
    });
    nodes.push(h('div', { className: 'jp-Envpack-row' }, [link]));
  }
  return nodes;
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
