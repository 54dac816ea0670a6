/**
 * Sweep: rerun the notebook once per row of a parameter grid (issue 14), `max_parallel` at once,
 * and show one row per member: its parameters, its verdict and its executed notebook.
 *
 * The grid uses the CLI's `--sweep` grammar, one parameter per line (`alpha = 0.1,0.2`,
 * `seed = 1..3`); the server parses it (execute/sweep.py), so both surfaces agree.
 */
import { EnvpackModel, isSweep } from '../model';
import { IOperation, IRunResult, ISweepRun } from '../tokens';
import { assignments, copyButton, h } from './dom';
import { OperationSection } from './opsection';

export class SweepSection extends OperationSection {
  constructor(options: SweepSection.IOptions) {
    super({
      label: 'Sweep',
      rank: 41,
      kind: 'run',
      needsEngine: true,
      buttonLabel: 'Run sweep',
      buttonTitle:
        'Rerun the notebook in its image once per combination of the values below',
      buttonClass: 'jp-Envpack-sweepButton',
      ...options
    });
    this._open = options.openPath;
    this._grid = h('textarea', {
      className: 'jp-Envpack-parameters jp-Envpack-sweepGrid',
      title:
        'One parameter per line: name = v1,v2,v3 or name = 1..10 (every combination runs)',
      attrs: {
        rows: '2',
        placeholder: 'e.g. alpha = 0.1,0.2\nseed = 1..3',
        spellcheck: 'false',
        'aria-label':
          'Sweep values, one "name = v1,v2" or "name = 1..3" per line'
      }
    });
    this._parallel = h('input', {
      className: 'jp-Envpack-maxParallel',
      attrs: {
        type: 'number',
        min: '1',
        max: '16',
        value: '2',
        'aria-label': 'Runs at once'
      }
    });
    this.body.insertBefore(
      h('div', { className: 'jp-Envpack-sweepForm' }, [
        this._grid,
        h('label', { className: 'jp-Envpack-label' }, [
          document.createTextNode('Runs at once '),
          this._parallel
        ])
      ]),
      this.body.firstChild
    );
  }

  protected shown(): IOperation | null {
    return this.model.latest('run', this.model.path, isSweep);
  }

  protected start(): Promise<unknown> {
    const sweep = parseSweep(this._grid.value);
    const maxParallel = Math.max(
      1,
      Math.min(16, Number(this._parallel.value) || 2)
    );
    return this.model.sweep(sweep, { maxParallel });
  }

  protected renderResult(op: IOperation | null): void {
    const result = op?.result as IRunResult | null | undefined;
    if (result?.sweep) {
      this.result.append(...renderSweep(result.sweep.runs, this._open));
      if (result.sweep.summary_csv) {
        this.result.appendChild(
          h('div', { className: 'jp-Envpack-row' }, [
            h('span', { className: 'jp-Envpack-label', text: 'Summary ' }),
            h('code', {
              className: 'jp-Envpack-value',
              text: result.sweep.summary_csv,
              title: result.sweep.summary_csv
            }),
            copyButton(result.sweep.summary_csv, 'summary CSV path')
          ])
        );
      }
    }
  }

  private _open: (path: string) => void;
  private _grid: HTMLTextAreaElement;
  private _parallel: HTMLInputElement;
}

export namespace SweepSection {
  export interface IOptions {
    model: EnvpackModel;
    openPath: (path: string) => void;
    rank?: number;
  }
}

/**
 * Parse the sweep grid: `name = values` per line (values in the CLI's `--sweep` grammar, checked
 * by the server). Blank lines and `#` comments are skipped.
 */
export function parseSweep(text: string): Record<string, string> {
  const sweep: Record<string, string> = {};
  for (const { line, name, value } of assignments(text)) {
    if (!name || !value) {
      throw new Error(
        `Sweep line ${line}: write "name = v1,v2" or "name = 1..3" with a Python identifier.`
      );
    }
    if (name in sweep) {
      throw new Error(`Sweep line ${line}: "${name}" is given twice.`);
    }
    sweep[name] = value;
  }
  if (!Object.keys(sweep).length) {
    throw new Error('Enter at least one line such as "seed = 1..3".');
  }
  return sweep;
}

const VERDICT_TEXT: Record<string, string> = {
  reproduced: 'Reproduced',
  'not-reproduced': 'Not reproduced',
  'nothing-to-compare': 'Nothing to compare'
};

/**
 * The summary table: one row per member (parameters, verdict or state, executed notebook).
 */
export function renderSweep(
  runs: ISweepRun[],
  open: (path: string) => void
): HTMLElement[] {
  const header = h('tr', {}, [
    h('th', { text: '#', attrs: { scope: 'col' } }),
    h('th', { text: 'Parameters', attrs: { scope: 'col' } }),
    h('th', { text: 'Verdict', attrs: { scope: 'col' } }),
    h('th', { text: 'Notebook', attrs: { scope: 'col' } })
  ]);
  const rows = runs.map(run => {
    const params = Object.entries(run.parameters)
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(', ');
    const verdict = run.verdict
      ? (VERDICT_TEXT[run.verdict] ?? run.verdict)
      : run.state;
    return h(
      'tr',
      {
        className: 'jp-Envpack-sweepRun',
        attrs: {
          'data-state': run.state,
          'data-verdict': run.verdict ?? ''
        }
      },
      [
        h('td', { text: String(run.index) }),
        h('td', {
          className: 'jp-Envpack-sweepParams',
          text: params,
          title: params
        }),
        h('td', {
          className: 'jp-Envpack-sweepVerdict',
          text: verdict,
          title: run.message || verdict
        }),
        h('td', {}, [run.output_path ? openLink(run.output_path, open) : null])
      ]
    );
  });
  const failed = runs.filter(r => r.state !== 'succeeded').length;
  const same = runs.filter(r => r.verdict === 'reproduced').length;
  return [
    h('div', {
      className: 'jp-Envpack-note jp-Envpack-sweepSummary',
      text: `${runs.length} runs: ${same} reproduced, ${failed} failed`
    }),
    h('table', { className: 'jp-Envpack-table jp-Envpack-sweepTable' }, [
      h('thead', {}, [header]),
      h('tbody', {}, rows)
    ])
  ];
}

function openLink(path: string, open: (path: string) => void): HTMLElement {
  const name = path.split('/').pop() ?? path;
  const link = h('a', {
    className: 'jp-Envpack-openOutput',
    text: 'Open',
    title: path,
    attrs: { href: '#', 'aria-label': `Open ${name}` }
  });
  link.addEventListener('click', event => {
    event.preventDefault();
    open(path);
  });
  return link;
}
