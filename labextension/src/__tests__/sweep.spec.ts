/**
 * The Sweep section (issue 14): the grid in the CLI's --sweep grammar, the request, the summary.
 */
import { Widget } from '@lumino/widgets';

import { EnvpackClient } from '../api';
import { EnvpackModel } from '../model';
import { parseSweep, renderSweep, RunSection, SweepSection } from '../sidebar';
import { FakeServer, json, operation } from './fakeserver';

const RUNS = [
  {
    index: 0,
    parameters: { seed: 0 },
    state: 'succeeded',
    verdict: 'reproduced',
    output_path: 'tiny.sweep/tiny.sweep-00-seed=0.ipynb'
  },
  {
    index: 1,
    parameters: { seed: 1 },
    state: 'succeeded',
    verdict: 'not-reproduced',
    output_path: 'tiny.sweep/tiny.sweep-01-seed=1.ipynb'
  },
  { index: 2, parameters: { seed: 2 }, state: 'failed', message: 'boom' }
];

describe('parseSweep', () => {
  it('reads one "name = values" per line, values kept in the CLI grammar', () => {
    expect(parseSweep('alpha = 0.1,0.2\n# note\n\nseed=1..3')).toEqual({
      alpha: '0.1,0.2',
      seed: '1..3'
    });
  });

  it.each([['1x = 1,2'], ['seed'], ['seed = '], ['a=1\na=2'], ['']])(
    'refuses %p with a message saying how to write it',
    text => expect(() => parseSweep(text)).toThrow(/Sweep line|at least one/)
  );
});

describe('renderSweep', () => {
  it('shows one row per member: parameters, verdict or state, a link to its notebook', () => {
    const opened: string[] = [];
    const root = document.createElement('div');
    root.append(...renderSweep(RUNS, p => opened.push(p)));
    const rows = Array.from(root.querySelectorAll('tbody tr'));
    expect(
      rows.map(r => r.querySelector('td:nth-child(2)')!.textContent)
    ).toEqual(['seed=0', 'seed=1', 'seed=2']);
    expect(
      rows.map(r => r.querySelector('.jp-Envpack-sweepVerdict')!.textContent)
    ).toEqual(['Reproduced', 'Not reproduced', 'failed']);
    expect(root.textContent).toContain('3 runs: 1 reproduced, 1 failed');
    rows[1].querySelector<HTMLAnchorElement>('a')!.click();
    expect(opened).toEqual(['tiny.sweep/tiny.sweep-01-seed=1.ipynb']);
    expect(rows[2].querySelector('a')).toBeNull();
  });
});

describe('SweepSection', () => {
  it('POSTs a run with sweep and max_parallel, and shows its table (not in the Run section)', async () => {
    const server = new FakeServer();
    server.on('GET', 'status', () => json({ engine: { reachable: true } }));
    const sweepOp = operation({
      kind: 'run',
      path: 'tiny.ipynb',
      state: 'succeeded',
      options: { sweep: { seed: '0..2' }, max_parallel: 3 },
      result: {
        sweep: {
          folder: 'tiny.sweep',
          summary_csv: 'tiny.sweep/summary.csv',
          runs: RUNS
        }
      }
    });
    server.on('POST', 'operations', () => json(sweepOp, 202));
    const client = new EnvpackClient({ serverSettings: server.settings });
    const model = new EnvpackModel({
      client,
      retryDelay: 1,
      statusRetryDelay: 60_000
    });
    const section = new SweepSection({ model, openPath: () => undefined });
    const run = new RunSection({ model, openPath: () => undefined });
    Widget.attach(section, document.body);
    Widget.attach(run, document.body);
    model.path = 'tiny.ipynb';
    section.node.querySelector('textarea')!.value = 'seed = 0..2';
    section.node.querySelector<HTMLInputElement>(
      '.jp-Envpack-maxParallel'
    )!.value = '3';
    section.node
      .querySelector<HTMLButtonElement>('.jp-Envpack-sweepButton')!
      .click();
    await new Promise(r => setTimeout(r, 20));
    const body = JSON.parse(server.requestsTo('POST', 'operations')[0].body!);
    expect(body).toEqual({
      kind: 'run',
      path: 'tiny.ipynb',
      options: { sweep: { seed: '0..2' }, max_parallel: 3 }
    });
    expect(section.node.querySelectorAll('.jp-Envpack-sweepRun').length).toBe(
      3
    );
    expect(run.node.querySelector('.jp-Envpack-sweepRun')).toBeNull();
    expect(run.node.textContent).not.toContain('seed=');
    model.dispose();
    document.body.innerHTML = '';
  });
});
