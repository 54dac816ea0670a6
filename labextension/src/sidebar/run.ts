/**
 * Run: rerun the notebook in its image with optional parameters, then show the report cell by cell
 * (same / differs with the diff / error) and a link that opens the executed notebook.
 */
import { EnvpackModel, isSweep, isTerminal } from '../model';
import {
  ICellResult,
  IOperation,
  IReport,
  IReportWarning,
  IRunResult,
  ReportVerdict
} from '../tokens';
import { renderImage } from './build';
import { assignments, button, copyButton, h } from './dom';
import { ENGINE_DOWN, OperationSection } from './opsection';
import { reconstructionNotice } from './reconstruct';

export class RunSection extends OperationSection {
  constructor(options: RunSection.IOptions) {
    super({
      label: 'Run',
      rank: 40,
      kind: 'run',
      needsEngine: true,
      buttonLabel: 'Rerun in container',
      buttonTitle:
        'Build if needed, execute the notebook in its image and compare the outputs',
      buttonClass: 'jp-Envpack-runButton',
      ...options
    });
    this._open = options.openPath;
    this._notebook = options.notebook ?? {};
    this._params = h('textarea', {
      className: 'jp-Envpack-parameters',
      title:
        'One parameter per line: name = value (JSON, else a string), like papermill -p',
      attrs: {
        rows: '2',
        placeholder: 'parameters, e.g. n = 3',
        spellcheck: 'false',
        'aria-label': 'Run parameters, one "name = value" per line'
      }
    });
    this.body.insertBefore(this._params, this.body.firstChild);
    this._venvButton = button(
      'Rerun in a fresh environment',
      () => {
        this.error.textContent = '';
        void this._startVenv();
      },
      {
        className: 'jp-Envpack-venvButton',
        title:
          'No Docker engine here: create a virtualenv from the lock on the server, rerun the ' +
          'notebook in it and compare the outputs'
      }
    );
    this.startButton.parentElement?.appendChild(this._venvButton);
  }

  protected disabledReason(): string | null {
    const why = super.disabledReason();
    return why === ENGINE_DOWN && this.model.venvFallback
      ? `${ENGINE_DOWN} "Rerun in a fresh environment" needs no Docker.`
      : why;
  }

  protected shown(): IOperation | null {
    return this.model.latest('run', this.model.path, op => !isSweep(op));
  }

  render(): void {
    super.render();
    // Shown only when no engine answers and the server can make a virtualenv (issue 13.1).
    this._venvButton.hidden = !(this.model.path && this.model.venvFallback);
  }

  protected start(): Promise<unknown> {
    const parameters = parseParameters(this._params.value);
    return this.model.run(this.model.path, { parameters });
  }

  private async _startVenv(): Promise<void> {
    this._venvButton.disabled = true;
    try {
      const parameters = parseParameters(this._params.value);
      await this.model.run(this.model.path, { parameters, engine: 'venv' });
    } catch (err) {
      this.error.textContent = err instanceof Error ? err.message : String(err);
      this.error.hidden = false;
    } finally {
      this._venvButton.disabled = false;
    }
  }

  protected renderResult(op: IOperation | null): void {
    const result = op?.result as IRunResult | null | undefined;
    if (result?.build?.image) {
      this.result.appendChild(
        h('div', { className: 'jp-Envpack-row' }, renderImage(result.build))
      );
    }
    if (result?.report && op) {
      const actions = { ...this._notebook, path: op.path };
      this.result.append(
        ...renderReport(result.report, result.output_path, this._open, actions)
      );
    }
    // The run just ended while shown: bring its verdict into view.
    const ended = op && this._running === op.id && isTerminal(op);
    this._running = op && !isTerminal(op) ? op.id : null;
    if (ended) {
      this.result
        .querySelector('.jp-Envpack-verdict')
        ?.scrollIntoView?.({ block: 'nearest' });
    }
  }

  private _running: string | null = null;
  private _venvButton: HTMLButtonElement;
  private _open: (path: string) => void;
  private _notebook: INotebookActions;
  private _params: HTMLTextAreaElement;
}

export namespace RunSection {
  export interface IOptions {
    model: EnvpackModel;
    /**
     * Open a file of the server's contents (the executed notebook).
     */
    openPath: (path: string) => void;
    /**
     * What the report can do in the notebook (tag the parameters cell).
     */
    notebook?: INotebookActions;
    rank?: number;
  }
}

/**
 * Actions on the rerun notebook offered by the report.
 */
export interface INotebookActions {
  /**
   * Tag the cell at `cell` (0-based, among all cells) of the notebook at `path` `parameters`.
   */
  tagParameters?: (path: string, cell: number) => Promise<void>;
  /**
   * Select and scroll to a cell of the notebook at `path`.
   */
  showCell?: (path: string, cell: number) => Promise<void>;
}

/**
 * Parse `name = value` lines: the value is JSON when it parses, else the string (papermill's -p).
 */
export function parseParameters(text: string): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const { line, name, value } of assignments(text)) {
    if (!name) {
      throw new Error(
        `Parameter line ${line}: write "name = value" with a Python identifier.`
      );
    }
    try {
      result[name] = JSON.parse(value);
    } catch {
      result[name] = value;
    }
  }
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
 * The verdict of a report (older servers send only `reproduced`).
 */
export function reportVerdict(report: IReport): ReportVerdict {
  return (
    report.verdict ?? (report.reproduced ? 'reproduced' : 'not-reproduced')
  );
}

const VERDICTS: Record<ReportVerdict, { text: string; className: string }> = {
  reproduced: { text: 'Reproduced', className: 'jp-mod-success' },
  'not-reproduced': { text: 'Not reproduced', className: 'jp-mod-failure' },
  'nothing-to-compare': {
    text: 'Nothing to compare',
    className: 'jp-mod-neutral'
  }
};

/**
 * The DOM of a run result: verdict, parameters, warnings, one row per cell, the executed notebook
 * link.
 */
export function renderReport(
  report: IReport,
  outputPath: string | null,
  open: (path: string) => void,
  notebook: INotebookActions & { path?: string } = {}
): HTMLElement[] {
  const verdict = reportVerdict(report);
  const { text, className } = VERDICTS[verdict];
  const note =
    verdict === 'nothing-to-compare'
      ? 'No code cell of the notebook had been executed, so there was nothing to compare: ' +
        'run the notebook, save it, and rerun.'
      : summaryText(report);
  const nodes: HTMLElement[] = [
    h('div', {
      className: `jp-Envpack-verdict ${className}`,
      text,
      attrs: { 'data-verdict': verdict }
    }),
    h('div', { className: 'jp-Envpack-note', text: note }),
    reconstructionNotice(report.origin, report.reconstruction),
    renderParameters(report.parameters),
    ...(report.warnings ?? []).map(w => renderWarning(w, notebook)),
    h(
      'ul',
      { className: 'jp-Envpack-cells' },
      report.cells.map(cell => renderCell(cell, notebook))
    )
  ].filter((node): node is HTMLElement => node !== null);
  if (outputPath) {
    nodes.push(openOutputLink(outputPath, open));
  }
  return nodes;
}

/**
 * The parameters the rerun used, `name = value` per line (nothing when none were given).
 */
function renderParameters(
  parameters: Record<string, unknown> | undefined
): HTMLElement | null {
  const entries = Object.entries(parameters ?? {});
  if (!entries.length) {
    return null;
  }
  const text = entries
    .map(([name, value]) => `${name} = ${JSON.stringify(value)}`)
    .join('\n');
  return h('div', { className: 'jp-Envpack-usedParameters' }, [
    h('span', { className: 'jp-Envpack-label', text: 'Parameters used' }),
    h('pre', { className: 'jp-Envpack-code', text })
  ]);
}

/**
 * A report warning with its fix; `parameters-overridden` offers to tag the cell `parameters`.
 */
function renderWarning(
  warning: IReportWarning,
  notebook: INotebookActions & { path?: string }
): HTMLElement {
  const node = h(
    'div',
    { className: 'jp-Envpack-warning', attrs: { 'data-code': warning.code } },
    [
      h('div', { text: warning.message }),
      warning.hint
        ? h('div', {
            className: 'jp-Envpack-hint',
            text: `Fix: ${warning.hint}`
          })
        : null
    ]
  );
  const { tagParameters, path } = notebook;
  const cell = warning.cell;
  const untagged = warning.hint?.startsWith('tag ');
  if (
    warning.code === 'parameters-overridden' &&
    untagged &&
    tagParameters &&
    path &&
    typeof cell === 'number'
  ) {
    const tag = button(
      `Tag cell ${cell + 1} as parameters`,
      () => {
        tag.disabled = true;
        tagParameters(path, cell).then(
          () =>
            (tag.textContent = `Cell ${cell + 1} tagged: rerun to use the parameters`),
          err => {
            tag.disabled = false;
            tag.title = `Could not tag the cell: ${err}`;
          }
        );
      },
      {
        className: 'jp-Envpack-tagParameters',
        title: `Add the tag "parameters" to cell ${cell + 1} and save the notebook`
      }
    );
    node.appendChild(tag);
  }
  return node;
}

/**
 * A row with an "Open <path>" link that opens a notebook of the server's contents.
 */
export function openOutputLink(
  path: string,
  open: (path: string) => void
): HTMLElement {
  const link = h('a', {
    className: 'jp-Envpack-openOutput',
    text: `Open ${path}`,
    attrs: { href: '#' }
  });
  link.addEventListener('click', event => {
    event.preventDefault();
    open(path);
  });
  return h('div', { className: 'jp-Envpack-row' }, [
    link,
    copyButton(path, 'executed notebook path')
  ]);
}

/**
 * "Cell N", numbered as JupyterLab numbers cells (from 1, markdown cells included); a link to the
 * cell when the notebook can be shown.
 */
function cellLabel(
  index: number,
  notebook: INotebookActions & { path?: string }
): HTMLElement {
  const text = `Cell ${index + 1}`;
  const { showCell, path } = notebook;
  if (!showCell || !path) {
    return h('span', { className: 'jp-Envpack-cellIndex', text });
  }
  const link = h('a', {
    className: 'jp-Envpack-cellIndex',
    text,
    title: `Show cell ${index + 1} in ${path}`,
    attrs: { href: '#' }
  });
  link.addEventListener('click', event => {
    event.preventDefault();
    void showCell(path, index).catch(err => (link.title = String(err)));
  });
  return link;
}

function renderCell(
  cell: ICellResult,
  notebook: INotebookActions & { path?: string } = {}
): HTMLElement {
  const detail = cell.ename ? `${cell.ename}: ${cell.evalue ?? ''}` : '';
  const item = h(
    'li',
    { className: 'jp-Envpack-cell', attrs: { 'data-status': cell.status } },
    [
      cellLabel(cell.index, notebook),
      h('span', {
        className: `jp-Envpack-badge jp-Envpack-cell-${cell.status}`,
        text: cell.status
      }),
      detail
        ? h('div', { className: 'jp-Envpack-cellError', text: detail })
        : null
    ]
  );
  if (cell.reason) {
    item.appendChild(
      h('div', {
        className: 'jp-Envpack-reason',
        text: `Likely reason: ${cell.reason.text}`,
        attrs: { 'data-reason': cell.reason.code }
      })
    );
  }
  if (cell.diff || cell.source) {
    item.appendChild(renderDiff(cell));
  }
  return item;
}

/**
 * The cell's source beside its diff (stacked when the sidebar is narrow), both as plain text.
 */
function renderDiff(cell: ICellResult): HTMLElement {
  const panes = h('div', { className: 'jp-Envpack-diffPanes' }, [
    cell.source
      ? h('figure', { className: 'jp-Envpack-cellSource' }, [
          h('figcaption', { text: 'Source' }),
          h('pre', { text: cell.source })
        ])
      : null,
    cell.diff
      ? h('figure', { className: 'jp-Envpack-cellDiff' }, [
          h('figcaption', { text: 'Output diff' }),
          h('pre', { text: cell.diff })
        ])
      : null
  ]);
  return h('details', { className: 'jp-Envpack-diff' }, [
    h('summary', { text: cell.diff ? 'diff' : 'source' }),
    panes
  ]);
}
