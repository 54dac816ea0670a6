/**
 * The report's cell source and guessed reason, copy buttons, the fresh-environment rerun (13.1)
 * and the reconstruction notice and offer (13.2).
 */
import { Widget } from '@lumino/widgets';

import { EnvpackClient } from '../api';
import { EnvpackModel } from '../model';
import { openDetails, reopenDetails } from '../sidebar/dom';
import {
  copyButton,
  EnvironmentSection,
  mostlyUnresolved,
  renderReport,
  RunSection
} from '../sidebar';
import { IReport, ISnapshot } from '../tokens';
import { FakeServer, json, operation } from './fakeserver';
import RECORDED from './fixtures/reconstructed-snapshot.json';

const tick = (ms = 20) => new Promise(r => setTimeout(r, ms));

function makeModel(server: FakeServer): EnvpackModel {
  const client = new EnvpackClient({ serverSettings: server.settings });
  return new EnvpackModel({ client, retryDelay: 1, statusRetryDelay: 60_000 });
}

const REPORT: IReport = {
  schema: 'envpack.report/1',
  reproduced: false,
  verdict: 'not-reproduced',
  summary: { same: 1, differs: 1 },
  cells: [
    { index: 0, status: 'same' },
    {
      index: 2,
      status: 'differs',
      diff: '-0.1\n+0.7',
      source: 'import random\nprint(random.random())',
      reason: {
        code: 'unseeded-random',
        text: 'The cell draws random numbers without a seed; seed the generator.'
      }
    }
  ]
};

describe('report: a differing cell', () => {
  it('shows its source beside its diff and the guessed reason, as text', () => {
    const root = document.createElement('div');
    root.append(...renderReport(REPORT, 'nb.envpack.ipynb', () => undefined));
    const cell = root.querySelector('[data-status="differs"]')!;
    expect(cell.querySelector('.jp-Envpack-cellSource pre')!.textContent).toBe(
      'import random\nprint(random.random())'
    );
    expect(cell.querySelector('.jp-Envpack-cellDiff pre')!.textContent).toBe(
      '-0.1\n+0.7'
    );
    const reason = cell.querySelector<HTMLElement>('.jp-Envpack-reason')!;
    expect(reason.dataset.reason).toBe('unseeded-random');
    expect(reason.textContent).toMatch(/^Likely reason: .*without a seed/);
    expect(root.querySelector('[data-status="same"] .jp-Envpack-reason')).toBe(
      null
    );
    // The executed notebook's path can be copied.
    expect(
      root.querySelector('[aria-label="Copy executed notebook path"]')
    ).not.toBeNull();
  });
});

describe('copy buttons', () => {
  const original = navigator.clipboard;
  afterEach(() =>
    Object.defineProperty(navigator, 'clipboard', {
      value: original,
      configurable: true
    })
  );

  it('write the full value and say "Copied", or say that it failed', async () => {
    const written: string[] = [];
    Object.defineProperty(navigator, 'clipboard', {
      value: { writeText: async (t: string) => void written.push(t) },
      configurable: true
    });
    const ok = copyButton('sha256:abcdef', 'image digest');
    expect(ok.getAttribute('aria-label')).toBe('Copy image digest');
    ok.click();
    await tick();
    expect(written).toEqual(['sha256:abcdef']);
    expect(ok.textContent).toBe('Copied');
    Object.defineProperty(navigator, 'clipboard', {
      value: { writeText: () => Promise.reject(new Error('denied')) },
      configurable: true
    });
    const denied = copyButton('x', 'path');
    denied.click();
    await tick();
    expect(denied.textContent).toBe('Copy failed');
  });
});

describe('13.1 Rerun in a fresh environment', () => {
  let server: FakeServer;
  let model: EnvpackModel;
  afterEach(() => {
    model.dispose();
    document.body.innerHTML = '';
  });

  async function section(status: object): Promise<HTMLButtonElement> {
    server = new FakeServer();
    server.on('GET', 'status', () => json(status));
    server.on('POST', 'operations', () =>
      json(operation({ kind: 'run', state: 'queued' }), 202)
    );
    model = makeModel(server);
    const run = new RunSection({ model, openPath: () => undefined });
    Widget.attach(run, document.body);
    model.path = 'nb.ipynb';
    await model.refreshStatus();
    return run.node.querySelector<HTMLButtonElement>('.jp-Envpack-venvButton')!;
  }

  it('is offered when no engine answers and the server can make a virtualenv; it POSTs engine venv', async () => {
    const venv = await section({
      engine: { reachable: false },
      venv_available: true
    });
    expect(venv.hidden).toBe(false);
    expect(venv.textContent).toBe('Rerun in a fresh environment');
    expect(
      document.querySelector('.jp-Envpack-disabledReason')!.textContent
    ).toMatch(/not reachable.*"Rerun in a fresh environment" needs no Docker/);
    venv.click();
    await tick();
    const body = JSON.parse(server.requestsTo('POST', 'operations')[0].body!);
    expect(body.kind).toBe('run');
    expect(body.options.engine).toBe('venv');
  });

  it('is hidden while the engine answers, or when no virtualenv can be made', async () => {
    expect(
      (await section({ engine: { reachable: true }, venv_available: true }))
        .hidden
    ).toBe(true);
    model.dispose();
    expect(
      (await section({ engine: { reachable: false }, venv_available: false }))
        .hidden
    ).toBe(true);
  });
});

describe('13.2 reconstruction (recorded snapshot JSON)', () => {
  const recorded = RECORDED.reconstructed as unknown as ISnapshot;
  const plain = RECORDED.kernel as unknown as ISnapshot;
  let server: FakeServer;
  let model: EnvpackModel;
  afterEach(() => {
    model.dispose();
    document.body.innerHTML = '';
  });

  it('offers "Reconstruct environment (as of DATE)" when most imports are unresolved', async () => {
    expect(mostlyUnresolved(plain)).toBe(true);
    expect(mostlyUnresolved(recorded)).toBe(false);
    server = new FakeServer();
    server.on('GET', 'snapshot', req =>
      json(req.url.searchParams.get('reconstruct') ? recorded : plain)
    );
    server.on('GET', 'dockerfile', () => new Response('FROM x\n'));
    model = makeModel(server);
    const env = new EnvironmentSection({ model });
    Widget.attach(env, document.body);
    model.path = 'old.ipynb';
    await model.refreshSnapshot();
    expect(env.node.querySelector('.jp-Envpack-reconstructed')).toBeNull();
    const date = env.node.querySelector<HTMLInputElement>('.jp-Envpack-asOf')!;
    date.value = '2024-06-01';
    date.dispatchEvent(new Event('input'));
    const go = env.node.querySelector<HTMLButtonElement>(
      '.jp-Envpack-reconstruct'
    )!;
    expect(go.textContent).toBe('Reconstruct environment (as of 2024-06-01)');
    go.click();
    await tick();
    const url = server.requestsTo('GET', 'snapshot').pop()!.url;
    expect(url.searchParams.get('reconstruct')).toBe('1');
    expect(url.searchParams.get('as_of')).toBe('2024-06-01');
    const notice = env.node.querySelector('.jp-Envpack-reconstructed')!;
    expect(notice.textContent).toMatch(
      /^Educated reconstruction, not what ran/
    );
    expect(notice.textContent).toContain(
      String(recorded.reconstruction!.as_of_used)
    );
    expect(env.node.querySelector('.jp-Envpack-reconstruct')).toBeNull();
  });

  it('a report of a reconstructed environment says so', () => {
    const root = document.createElement('div');
    const report = { ...REPORT, origin: 'reconstructed' };
    root.append(...renderReport(report, null, () => undefined));
    expect(
      root.querySelector('.jp-Envpack-reconstructed')!.textContent
    ).toMatch(/not what ran/);
    const plainRoot = document.createElement('div');
    plainRoot.append(...renderReport(REPORT, null, () => undefined));
    expect(plainRoot.querySelector('.jp-Envpack-reconstructed')).toBeNull();
  });
});

describe('a re-render keeps what the user opened', () => {
  it('reopens the <details> that were open, and only those', () => {
    const root = document.createElement('div');
    const draw = (): void => {
      root.replaceChildren(
        ...[0, 1, 2].map(() => {
          const d = document.createElement('details');
          d.appendChild(document.createElement('summary'));
          return d;
        })
      );
    };
    draw();
    (root.children[1] as HTMLDetailsElement).open = true;
    const keep = openDetails(root);
    draw();
    expect((root.children[1] as HTMLDetailsElement).open).toBe(false);
    reopenDetails(root, keep);
    expect(
      Array.from(root.querySelectorAll('details')).map(d => d.open)
    ).toEqual([false, true, false]);
  });
});
