import { AccordionPanel, Widget } from '@lumino/widgets';

import { EnvpackClient } from '../api';
import { EnvpackModel } from '../model';
import {
  BuildSection,
  EnvironmentSection,
  EnvpackSection,
  EnvpackSidebar,
  HistorySection,
  OperationView,
  parseParameters,
  RunSection,
  statusProblems,
  toolbarButton
} from '../sidebar';
import { ISnapshot } from '../tokens';
import { FakeServer, frame, json, operation, sse } from './fakeserver';

const EVIL =
  '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>\u001b[31m';

const SNAPSHOT: ISnapshot = {
  schema: 'envpack.snapshot/1',
  python: { version: '3.11.7' },
  packages: [
    { name: 'numpy', version: '1.26.4', requested: true, modules: ['numpy'] },
    { name: EVIL, version: '1.0', requested: true },
    { name: 'pyyaml', version: '6.0.1', requested: false }
  ],
  local_files: ['stats_helpers.py'],
  warnings: [
    {
      code: 'unresolved-import',
      message: "cannot resolve 'sklearn'",
      cell: 2,
      hint: 'pip install scikit-learn'
    }
  ],
  hash: '0123456789abcdef0123'
};

function makeModel(server: FakeServer): EnvpackModel {
  return new EnvpackModel({
    client: new EnvpackClient({ serverSettings: server.settings }),
    retryDelay: 1
  });
}

async function until<T>(found: () => T | null | undefined): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const value = found();
    if (value) {
      return value;
    }
    await new Promise(r => setTimeout(r, 10));
  }
  throw new Error('timed out');
}

function attach<T extends Widget>(widget: T): T {
  Widget.attach(widget, document.body);
  return widget;
}

describe('sidebar sections', () => {
  let server: FakeServer;
  let model: EnvpackModel;

  beforeEach(() => {
    server = new FakeServer();
    server.on('GET', 'snapshot', () => json(SNAPSHOT));
    server.on('GET', 'dockerfile', () => new Response('FROM x\n'));
    model = makeModel(server);
  });

  afterEach(() => {
    model.dispose();
    document.body.innerHTML = '';
    delete (window as any).__pwned;
  });

  it('Environment shows Python, requested vs pulled-in packages, files and warnings with fixes', async () => {
    const section = attach(new EnvironmentSection({ model }));
    expect(section.node.textContent).toContain('Open a notebook.');
    model.path = 'nb.ipynb';
    await model.refreshSnapshot();
    const text = section.node.textContent!;
    expect(text).toContain('Python 3.11.7');
    expect(text).toContain('2 requested · 1 pulled in');
    expect(text).toContain("cannot resolve 'sklearn'");
    expect(text).toContain('Fix: pip install scikit-learn');
    expect(text).toContain('Local files (1)');
    expect(
      section.node.querySelector('[data-package="pyyaml"]')
    ).not.toBeNull();
    section.dispose();
  });

  it('renders untrusted names and logs as text, never as HTML (RELIABILITY A7)', async () => {
    const section = attach(new EnvironmentSection({ model }));
    model.path = 'nb.ipynb';
    await model.refreshSnapshot();
    const view = new OperationView(model, { logOpen: true });
    document.body.appendChild(view.node);
    server.on('GET', 'operations', () => json({ operations: [operation()] }));
    server.on('GET', 'operations/op1/events', () =>
      sse([
        frame(1, 'progress', { kind: 'log', message: EVIL }),
        frame(2, 'state', { state: 'failed' })
      ])
    );
    server.on('GET', 'operations/op1', () =>
      json(operation({ state: 'failed', error: { message: EVIL, hint: 'h' } }))
    );
    await model.refreshOperations();
    view.setOperation(model.getOperation('op1')!);
    await model.follow('op1');
    expect(document.body.querySelector('img, script')).toBeNull();
    expect(view.node.querySelector('pre')!.textContent).toContain('<script>');
    expect(view.node.querySelector('.jp-Envpack-error')!.textContent).toBe(
      `${EVIL}\nh`
    );
    expect((window as any).__pwned).toBeUndefined();
    view.dispose();
    section.dispose();
  });

  it('Build shows progress while running, then the image with "cached", and hides cancel', async () => {
    model.path = 'nb.ipynb';
    const section = attach(new BuildSection({ model }));
    server.on('POST', 'operations', () =>
      json(operation({ progress: 0.25 }), 202)
    );
    let finished = false;
    server.on('GET', 'operations/op1/events', () =>
      sse(
        finished
          ? []
          : [frame(1, 'progress', { kind: 'progress', progress: 0.25 })]
      )
    );
    server.on('GET', 'operations/op1', () =>
      json(
        operation(
          finished
            ? {
                state: 'succeeded',
                result: { image: 'envpack/nb:abc', cached: true, duration: 0.4 }
              }
            : {}
        )
      )
    );
    const button = section.node.querySelector<HTMLButtonElement>(
      '.jp-Envpack-buildButton'
    )!;
    button.click();
    await new Promise(r => setTimeout(r, 20));
    const view = section.node.querySelector<HTMLElement>(
      '.jp-Envpack-operation'
    )!;
    expect(view.dataset.state).toBe('running');
    expect(
      section.node.querySelector<HTMLElement>('.jp-Envpack-cancel')!.hidden
    ).toBe(false);
    finished = true;
    await model.waitFor('op1');
    expect(view.dataset.state).toBe('succeeded');
    expect(section.node.querySelector('.jp-Envpack-image')!.textContent).toBe(
      'envpack/nb:abc'
    );
    expect(section.node.querySelector('.jp-Envpack-cached')).not.toBeNull();
    expect(
      section.node.querySelector<HTMLElement>('.jp-Envpack-cancel')!.hidden
    ).toBe(true);
    section.dispose();
  });

  it('Build shows the image a newer rerun built (Containerise builds inside the run)', async () => {
    server.on('GET', 'operations', () =>
      json({
        operations: [
          operation({
            id: 'r',
            kind: 'run',
            state: 'succeeded',
            created: 20,
            result: {
              output_path: null,
              report: null,
              build: { image: 'envpack/nb:new', cached: false }
            }
          }),
          operation({
            id: 'b',
            kind: 'build',
            state: 'succeeded',
            created: 10,
            result: { image: 'envpack/nb:old', cached: true }
          })
        ]
      })
    );
    model.path = 'nb.ipynb';
    await model.refreshOperations();
    const section = attach(new BuildSection({ model }));
    expect(section.node.querySelector('.jp-Envpack-image')!.textContent).toBe(
      'envpack/nb:new'
    );
    expect(section.node.textContent).toContain('Built by the last rerun:');
    section.dispose();
  });

  it('Build shows a readable error when the engine is down', async () => {
    model.path = 'nb.ipynb';
    const section = attach(new BuildSection({ model }));
    server.on('POST', 'operations', () =>
      json(
        {
          reason: 'engine-unavailable',
          message: 'Docker engine not reachable: connection refused',
          hint: 'start Docker'
        },
        503
      )
    );
    section.node
      .querySelector<HTMLButtonElement>('.jp-Envpack-buildButton')!
      .click();
    await new Promise(r => setTimeout(r, 20));
    expect(section.node.querySelector('.jp-Envpack-error')!.textContent).toBe(
      'Docker engine not reachable: connection refused (start Docker)'
    );
    section.dispose();
  });

  it('Run sends parameters and shows the report cell by cell with the output link', async () => {
    const opened: string[] = [];
    model.path = 'nb.ipynb';
    const section = attach(
      new RunSection({ model, openPath: p => void opened.push(p) })
    );
    const report = {
      schema: 'envpack.report/1',
      reproduced: false,
      cells: [
        { index: 0, status: 'same' },
        { index: 1, status: 'differs', diff: '- 1\n+ 2' },
        { index: 2, status: 'new-error', ename: 'ValueError', evalue: 'boom' }
      ],
      summary: '1 same, 1 differs, 1 new-error'
    };
    const result = {
      image: 'envpack/nb:abc',
      output_path: 'nb.envpack.ipynb',
      report,
      build: { image: 'envpack/nb:abc', cached: true }
    };
    server.on('POST', 'operations', () =>
      json(operation({ kind: 'run', state: 'succeeded', result }), 202)
    );
    section.node.querySelector('textarea')!.value = 'n = 3\nname = hello';
    section.node
      .querySelector<HTMLButtonElement>('.jp-Envpack-runButton')!
      .click();
    await new Promise(r => setTimeout(r, 20));
    expect(
      JSON.parse(server.requestsTo('POST', 'operations')[0].body!).options
        .parameters
    ).toEqual({ n: 3, name: 'hello' });
    expect(section.node.querySelector('.jp-Envpack-verdict')!.textContent).toBe(
      'Not reproduced'
    );
    const statuses = Array.from(
      section.node.querySelectorAll<HTMLElement>('.jp-Envpack-cell')
    ).map(c => c.dataset.status);
    expect(statuses).toEqual(['same', 'differs', 'new-error']);
    expect(
      section.node.querySelector('.jp-Envpack-diff pre')!.textContent
    ).toBe('- 1\n+ 2');
    expect(section.node.textContent).toContain('ValueError: boom');
    section.node
      .querySelector<HTMLAnchorElement>('.jp-Envpack-openOutput')!
      .click();
    expect(opened).toEqual(['nb.envpack.ipynb']);
    section.dispose();
  });

  it('History lists operations of the current notebook and replays a finished log on expand', async () => {
    server.on('GET', 'operations', () =>
      json({
        operations: [
          operation({ id: 'b', state: 'succeeded' }),
          operation({ id: 'c', path: 'other.ipynb', state: 'failed' })
        ]
      })
    );
    server.on('GET', 'operations/b/events', () =>
      sse([frame(5, 'progress', { kind: 'log', message: 'old line' })])
    );
    server.on('GET', 'operations/b', () =>
      json(operation({ id: 'b', state: 'succeeded' }))
    );
    model.path = 'nb.ipynb';
    await model.refreshOperations();
    const section = attach(new HistorySection({ model }));
    const items = section.node.querySelectorAll<HTMLDetailsElement>(
      '.jp-Envpack-historyItem'
    );
    expect(items).toHaveLength(1);
    items[0].open = true;
    items[0].dispatchEvent(new Event('toggle'));
    await new Promise(r => setTimeout(r, 20));
    expect(items[0].querySelector('pre')!.textContent).toContain('old line');
    section.dispose();
  });
});

describe('parseParameters', () => {
  it('parses JSON values, else strings, like papermill -p', () => {
    expect(
      parseParameters('n = 3\nname=hello\n# comment\n\nflags = [1, 2]')
    ).toEqual({ n: 3, name: 'hello', flags: [1, 2] });
  });

  it.each(['3 = x', 'no equals sign', 'a.b = 1', 'x;import os = 1'])(
    'rejects %j',
    line => {
      expect(() => parseParameters(line)).toThrow(/line 1/);
    }
  );
});

describe('EnvpackSidebar', () => {
  class Probe extends EnvpackSection {
    render(): void {
      this.body.textContent = 'probe';
    }
  }

  it('orders sections by rank so new ones (Share, Cluster) slot in', () => {
    const server = new FakeServer();
    const model = makeModel(server);
    const sidebar = new EnvpackSidebar({ model, client: model.client });
    sidebar.addSection(new Probe({ model, label: 'Run', rank: 40 }));
    sidebar.addSection(new Probe({ model, label: 'Environment', rank: 10 }));
    sidebar.addSection(new Probe({ model, label: 'Share', rank: 60 }));
    sidebar.addSection(new Probe({ model, label: 'Cluster', rank: 45 }));
    expect(sidebar.widgets.map(w => w.title.label)).toEqual([
      'Environment',
      'Run',
      'Cluster',
      'Share'
    ]);
    sidebar.dispose();
    model.dispose();
  });

  it('collapses a section from its accordion title, whose toggle says so', async () => {
    const model = makeModel(new FakeServer());
    const sidebar = new EnvpackSidebar({ model, client: model.client });
    const section = new Probe({ model, label: 'Probe' });
    let clicked = 0;
    section.toolbar.addItem(
      'act',
      toolbarButton({ label: 'Act', tooltip: 'Act', onClick: () => clicked++ })
    );
    sidebar.addSection(section);
    attach(sidebar);
    const title = document.querySelector<HTMLElement>(
      '.jp-Envpack-sectionTitle-Probe'
    )!;
    const toggle = title.querySelector<HTMLElement>(
      '.jp-Envpack-sectionToggle'
    )!;
    expect(title.tagName).toBe('H3');
    expect(title.hasAttribute('aria-expanded')).toBe(false); // not allowed on a heading
    expect(toggle.getAttribute('role')).toBe('button');
    expect(toggle.getAttribute('aria-expanded')).toBe('true');
    expect(toggle.getAttribute('aria-controls')).toBe(section.id);
    expect(toggle.textContent).toBe('Probe');

    // A header action does its job and leaves the section open
    await until(() => title.querySelector('.jp-ToolbarButtonComponent'));
    const act = title.querySelector<HTMLElement>('.jp-ToolbarButtonComponent')!;
    expect(act.getAttribute('aria-label')).toBe('Act');
    expect(act.hasAttribute('aria-pressed')).toBe(false); // not a toggle (axe-core)
    act.click();
    expect(clicked).toBe(1);
    expect(section.collapsed).toBe(false);

    title.focus(); // where Lumino's arrow keys move the focus
    expect(document.activeElement).toBe(toggle);
    toggle.click();
    expect(section.collapsed).toBe(true);
    expect(toggle.getAttribute('aria-expanded')).toBe('false');
    expect(title.hasAttribute('aria-expanded')).toBe(false);
    sidebar.reveal(section);
    expect(section.collapsed).toBe(false);
    expect(toggle.getAttribute('aria-expanded')).toBe('true');
    expect(title.hasAttribute('aria-expanded')).toBe(false);
    section.collapsed = true;
    expect(toggle.getAttribute('aria-expanded')).toBe('false');
    sidebar.dispose();
    model.dispose();
  });

  it('gives a revealed section half the height', () => {
    const model = makeModel(new FakeServer());
    const sidebar = new EnvpackSidebar({ model, client: model.client });
    const names = ['Environment', 'Build', 'Run', 'History'];
    const sections = names.map(label => new Probe({ model, label }));
    sections.forEach(s => sidebar.addSection(s));
    attach(sidebar);
    sections[0].collapsed = true;
    sidebar.reveal(sections[2]);
    const sizes = (sidebar.content as AccordionPanel).relativeSizes();
    expect(sizes[2]).toBeCloseTo(0.5);
    expect(sizes[0]).toBe(0); // a folded section stays folded
    expect(sizes[1]).toBeCloseTo(0.25);
    expect(sections[0].collapsed).toBe(true);
    sidebar.dispose();
    model.dispose();
  });

  it('keeps Space on a header checkbox from folding the section', () => {
    const model = makeModel(new FakeServer());
    const sidebar = new EnvpackSidebar({ model, client: model.client });
    const history = new HistorySection({ model });
    sidebar.addSection(history);
    attach(sidebar);
    const box = document.querySelector<HTMLInputElement>(
      '.jp-Envpack-sectionTitle-History input[type="checkbox"]'
    )!;
    box.dispatchEvent(
      new KeyboardEvent('keydown', { key: ' ', keyCode: 32, bubbles: true })
    );
    box.click();
    expect(box.checked).toBe(false);
    expect(history.collapsed).toBe(false);
    sidebar.dispose();
    model.dispose();
  });

  it('says how to enable the server extension when /envpack is missing', async () => {
    const model = makeModel(new FakeServer()); // answers 404 to every route
    await model.refreshStatus();
    expect(statusProblems(model)[0]).toMatch(
      /server extension is not running.*jupyter server extension enable jupyter_envpack/
    );
    model.dispose();
  });

  it('reports an unreachable Docker engine and a degraded store in readable words', async () => {
    const server = new FakeServer();
    server.on('GET', 'status', () =>
      json({
        degraded: 'database is corrupt',
        engine: {
          reachable: false,
          error: { message: 'connection refused', reason: 'engine-unavailable' }
        }
      })
    );
    const model = makeModel(server);
    await model.refreshStatus();
    expect(statusProblems(model)).toEqual([
      'Docker engine not reachable: connection refused',
      'Operations history unavailable: database is corrupt'
    ]);
    server.on('GET', 'status', () =>
      json({
        engine: {
          reachable: false,
          error: {
            message: 'Docker engine not reachable at unix:///x',
            hint: 'start dockerd'
          }
        }
      })
    );
    await model.refreshStatus();
    expect(statusProblems(model)).toEqual([
      'Docker engine not reachable at unix:///x\nstart dockerd'
    ]);
    model.dispose();
  });
});
