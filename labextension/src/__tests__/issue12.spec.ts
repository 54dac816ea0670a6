/**
 * The wrong or misleading results of issue 12, each with the test that would have caught it.
 */
import { Widget } from '@lumino/widgets';

import { EnvpackClient } from '../api';
import { EnvpackModel } from '../model';
import {
  Announcer,
  createDefaultSections,
  EnvpackSidebar,
  OperationView,
  renderReport,
  RunSection
} from '../sidebar';
import { IOperation, IReport } from '../tokens';
import { FakeServer, frame, json, operation, sse } from './fakeserver';

const tick = (ms = 20): Promise<void> => new Promise(r => setTimeout(r, ms));

function makeModel(server: FakeServer, statusRetryDelay = 5): EnvpackModel {
  const client = new EnvpackClient({ serverSettings: server.settings });
  return new EnvpackModel({ client, retryDelay: 1, statusRetryDelay });
}

const REPORT: IReport = {
  schema: 'envpack.report/1',
  reproduced: true,
  verdict: 'reproduced',
  cells: [{ index: 1, status: 'same' }],
  summary: { same: 1 },
  parameters: { n: 5, name: 'a' },
  warnings: [
    {
      code: 'parameters-overridden',
      cell: 1,
      names: ['n'],
      message:
        "cell 2 assigns n after the injected parameters: the run used the notebook's own value",
      hint: "tag cell 2 `parameters` so the values are injected after it (papermill's contract)"
    }
  ]
};

describe('12.1 parameters in the report', () => {
  it('shows the parameters used, names the cell that wins and offers to tag it', async () => {
    const tagged: Array<[string, number]> = [];
    const tagParameters = async (path: string, cell: number): Promise<void> =>
      void tagged.push([path, cell]);
    const root = document.createElement('div');
    root.append(
      ...renderReport(REPORT, null, () => undefined, {
        path: 'nb.ipynb',
        tagParameters
      })
    );
    expect(
      root.querySelector('.jp-Envpack-usedParameters')!.textContent
    ).toContain('n = 5\nname = "a"');
    const warning = root.querySelector(
      '.jp-Envpack-warning[data-code="parameters-overridden"]'
    )!;
    expect(warning.textContent).toContain('cell 2 assigns n');
    const tag = warning.querySelector<HTMLButtonElement>(
      '.jp-Envpack-tagParameters'
    )!;
    expect(tag.textContent).toBe('Tag cell 2 as parameters');
    tag.click();
    await tick();
    expect(tagged).toEqual([['nb.ipynb', 1]]);
    expect(tag.textContent).toContain('rerun');
    // Cells are numbered as JupyterLab numbers them (from 1)
    expect(root.querySelector('.jp-Envpack-cellIndex')!.textContent).toBe(
      'Cell 2'
    );
  });
});

describe('12.7 the report leads to its cells', () => {
  it('a cell label is a link that shows the cell in the notebook', async () => {
    const shown: Array<[string, number]> = [];
    const showCell = async (path: string, cell: number): Promise<void> =>
      void shown.push([path, cell]);
    const root = document.createElement('div');
    root.append(
      ...renderReport(REPORT, null, () => undefined, {
        path: 'nb.ipynb',
        showCell
      })
    );
    const link = root.querySelector<HTMLAnchorElement>(
      'a.jp-Envpack-cellIndex'
    )!;
    expect(link.textContent).toBe('Cell 2');
    link.click();
    await tick();
    expect(shown).toEqual([['nb.ipynb', 1]]);
  });
});

describe('12.2 nothing to compare', () => {
  it('is its own, neutral verdict (not a green "Reproduced")', () => {
    const report: IReport = {
      ...REPORT,
      reproduced: false,
      verdict: 'nothing-to-compare',
      warnings: [],
      cells: [{ index: 0, status: 'skipped' }]
    };
    const root = document.createElement('div');
    root.append(...renderReport(report, null, () => undefined));
    const verdict = root.querySelector<HTMLElement>('.jp-Envpack-verdict')!;
    expect(verdict.textContent).toBe('Nothing to compare');
    expect(verdict.classList.contains('jp-mod-neutral')).toBe(true);
    expect(verdict.classList.contains('jp-mod-success')).toBe(false);
    expect(root.textContent).toContain(
      'No code cell of the notebook had been executed'
    );
  });
});

describe('12.3 the engine status is checked again', () => {
  it('after a failed check, with back-off, until it answers', async () => {
    const server = new FakeServer();
    let answers = 0;
    server.on('GET', 'status', () =>
      ++answers < 3
        ? json({ message: 'busy' }, 503)
        : json({ engine: { reachable: true } })
    );
    const model = makeModel(server);
    await model.refreshStatus();
    expect(model.statusOk).toBe(false);
    await tick(100);
    expect(answers).toBe(3);
    expect(model.statusOk).toBe(true);
    await tick(50);
    expect(answers).toBe(3); // no more checks once it answered
    model.dispose();
  });

  it('when a notebook becomes current while the engine was down', async () => {
    const server = new FakeServer();
    let reachable = false;
    server.on('GET', 'status', () => json({ engine: { reachable } }));
    const model = makeModel(server, 60_000);
    await model.refreshStatus();
    expect(model.engineAvailable).toBe(false);
    reachable = true;
    model.path = 'nb.ipynb';
    await tick();
    expect(model.engineAvailable).toBe(true);
    model.dispose();
  });

  it('a disabled Run button says why, in the sidebar and its tooltip', async () => {
    const server = new FakeServer();
    server.on('GET', 'status', () => json({ engine: { reachable: false } }));
    const model = makeModel(server, 60_000);
    const section = new RunSection({ model, openPath: () => undefined });
    Widget.attach(section, document.body);
    const button = section.node.querySelector<HTMLButtonElement>(
      '.jp-Envpack-runButton'
    )!;
    const why = section.node.querySelector<HTMLElement>(
      '.jp-Envpack-disabledReason'
    )!;
    expect(button.disabled).toBe(true);
    expect(why.textContent).toBe('Disabled: open a notebook first.');
    model.path = 'nb.ipynb';
    await model.refreshStatus();
    expect(button.disabled).toBe(true);
    expect(why.textContent).toMatch(/Docker engine is not reachable/);
    expect(button.title).toBe(why.textContent);
    expect(button.getAttribute('aria-describedby')).toBe(why.id);
    section.dispose();
    model.dispose();
  });
});

describe('12.4 operation view', () => {
  it('shows a cancel as a neutral note and drops the stale stage', () => {
    const model = makeModel(new FakeServer());
    const view = new OperationView(model);
    view.setOperation(
      operation({ state: 'running', stage: 'wheels', message: 'fetching…' })
    );
    expect(view.node.querySelector('.jp-Envpack-stage')!.textContent).toBe(
      'wheels fetching…'
    );
    view.setOperation(
      operation({
        state: 'cancelled',
        stage: 'wheels',
        message: 'fetching…',
        error: { message: 'cancelled', reason: 'cancelled' }
      })
    );
    expect(view.node.querySelector('.jp-Envpack-stage')!.textContent).toBe('');
    expect(
      view.node.querySelector<HTMLElement>('.jp-Envpack-error')!.hidden
    ).toBe(true);
    const ended = view.node.querySelector<HTMLElement>('.jp-Envpack-ended')!;
    expect(ended.hidden).toBe(false);
    expect(ended.textContent).toBe('Cancelled during wheels.');
    view.dispose();
    model.dispose();
  });

  it('replays the log of a finished operation seen after a reload (not "0 lines")', async () => {
    const server = new FakeServer();
    server.on('GET', 'operations/op1/events', () =>
      sse([
        frame(1, 'progress', { kind: 'log', message: 'line 1' }),
        frame(2, 'progress', { kind: 'log', message: 'line 2' })
      ])
    );
    server.on('GET', 'operations/op1', () =>
      json(operation({ state: 'succeeded' }))
    );
    const model = makeModel(server);
    const view = new OperationView(model);
    view.setOperation(operation({ state: 'succeeded' }));
    await tick(50);
    expect(view.node.querySelector('summary')!.textContent).toBe(
      'Log (2 lines)'
    );
    view.setOperation(operation({ state: 'succeeded', progress: 1 })); // same operation again
    await tick(50);
    expect(server.requestsTo('GET', 'operations/op1/events')).toHaveLength(1);
    view.dispose();
    model.dispose();
  });

  it('names its progress bar with its range', () => {
    const model = makeModel(new FakeServer());
    const view = new OperationView(model);
    view.setOperation(
      operation({ kind: 'run', state: 'running', progress: 0.4 })
    );
    const bar = view.node.querySelector('[role="progressbar"]')!;
    expect(bar.getAttribute('aria-label')).toBe('run progress');
    expect([
      bar.getAttribute('aria-valuemin'),
      bar.getAttribute('aria-valuemax'),
      bar.getAttribute('aria-valuenow')
    ]).toEqual(['0', '100', '40']);
    view.dispose();
    model.dispose();
  });
});

describe('12.7/12.9 announcements and accessible names', () => {
  it('announces state changes and the verdict, and notifies an end while hidden', () => {
    const model = makeModel(new FakeServer());
    const ended: string[] = [];
    const announcer = new Announcer(model, (_, text) => void ended.push(text));
    const emit = (op: IOperation): void => (model as any)._upsert(op);
    emit(operation({ id: 'old', kind: 'run', state: 'succeeded' })); // history: not news
    expect(announcer.node.textContent).toBe('');
    emit(operation({ kind: 'run', state: 'running' }));
    expect(announcer.node.textContent).toBe('Run of nb.ipynb running.');
    const result = {
      output_path: null,
      report: { ...REPORT, verdict: 'nothing-to-compare' }
    };
    emit(operation({ kind: 'run', state: 'succeeded', result }));
    expect(announcer.node.getAttribute('aria-live')).toBe('polite');
    expect(ended).toEqual(['Run of nb.ipynb succeeded: nothing to compare.']);
    announcer.dispose();
    model.dispose();
  });

  it('gives the four Refresh buttons and two filters distinct names', async () => {
    const model = makeModel(new FakeServer(), 60_000);
    const sidebar = new EnvpackSidebar({ model, client: model.client });
    const sections = createDefaultSections({
      model,
      saveFile: async () => true,
      openPath: () => undefined
    });
    sections.forEach(s => sidebar.addSection(s));
    Widget.attach(sidebar, document.body);
    // the header actions are JupyterLab toolbar buttons (React, rendered on the next frames)
    for (let i = 0; i < 100; i++) {
      if (document.querySelectorAll('.jp-ToolbarButtonComponent').length >= 5) {
        break;
      }
      await tick(10);
    }
    const names = (selector: string): string[] =>
      Array.from(document.querySelectorAll<HTMLElement>(selector)).map(
        n => n.getAttribute('aria-label') ?? n.textContent ?? ''
      );
    const refresh = names('button, jp-button').filter(n => /refresh/i.test(n));
    expect(refresh).toHaveLength(4);
    expect(new Set(refresh).size).toBe(4);
    const filters = names('input[type="checkbox"]').filter(n =>
      /this notebook/.test(n)
    );
    expect(filters).toEqual([
      'Jobs of this notebook only',
      'History of this notebook only'
    ]);
    sidebar.dispose();
    model.dispose();
  });
});
