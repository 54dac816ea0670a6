import { Widget } from '@lumino/widgets';

import { EnvpackClient } from '../api';
import { EnvpackModel } from '../model';
import { ClusterSection } from '../sidebar';
import { FakeServer, frame, json, operation, sse } from './fakeserver';

const EVIL =
  '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>';
const tick = (ms = 20): Promise<void> => new Promise(r => setTimeout(r, ms));

const STATUS = {
  kinds: ['build', 'job', 'run'],
  engine: { reachable: true },
  backends: {
    kubernetes: {
      available: false,
      reason: 'no kubeconfig found',
      hint: 'set KUBECONFIG'
    },
    swarm: { available: true }
  },
  default_backend: 'swarm'
};

describe('ClusterSection', () => {
  let server: FakeServer;
  let model: EnvpackModel;
  let opened: string[];

  beforeEach(() => {
    server = new FakeServer();
    server.on('GET', 'snapshot', () => json({}));
    server.on('GET', 'dockerfile', () => new Response('FROM x\n'));
    server.on('GET', 'status', () => json(STATUS));
    model = new EnvpackModel({
      client: new EnvpackClient({ serverSettings: server.settings }),
      retryDelay: 1
    });
    opened = [];
  });

  afterEach(() => {
    model.dispose();
    document.body.innerHTML = '';
    delete (window as any).__pwned;
  });

  function attach(): ClusterSection {
    const section = new ClusterSection({
      model,
      openPath: p => void opened.push(p)
    });
    Widget.attach(section, document.body);
    return section;
  }

  const submit = (section: ClusterSection): HTMLButtonElement =>
    section.node.querySelector<HTMLButtonElement>('.jp-Envpack-submitJob')!;

  it('offers the backends from the status; unavailable ones are disabled with their reason', async () => {
    model.path = 'nb.ipynb';
    const section = attach();
    expect(submit(section).disabled).toBe(true); // no status yet
    await model.refreshStatus();
    const select = section.node.querySelector<HTMLSelectElement>(
      '.jp-Envpack-backend'
    )!;
    const options = Array.from(select.options).map(o => [
      o.value,
      o.disabled,
      o.textContent
    ]);
    expect(options).toEqual([
      ['kubernetes', true, 'kubernetes (unavailable)'],
      ['swarm', false, 'swarm']
    ]);
    expect(select.value).toBe('swarm');
    expect(
      section.node.querySelector('[data-backend="kubernetes"]')!.textContent
    ).toBe('kubernetes unavailable: no kubeconfig foundFix: set KUBECONFIG');
    expect(submit(section).disabled).toBe(false);
    section.dispose();
  });

  it('says so when the server has no job kind or no usable backend', async () => {
    server.on('GET', 'status', () =>
      json({ ...STATUS, kinds: ['build', 'run'], backends: {} })
    );
    model.path = 'nb.ipynb';
    const section = attach();
    await model.refreshStatus();
    expect(section.node.textContent).toContain(
      'Cluster jobs are not enabled on this server'
    );
    expect(submit(section).disabled).toBe(true);
    server.on('GET', 'status', () =>
      json({
        ...STATUS,
        backends: {
          swarm: {
            available: false,
            reason: 'this Docker engine is not part of a swarm',
            hint: 'docker swarm init'
          }
        }
      })
    );
    await model.refreshStatus();
    expect(section.node.textContent).toContain(
      'No cluster backend is usable from this server.'
    );
    expect(section.node.textContent).toContain(
      'swarm unavailable: this Docker engine is not part of a swarm'
    );
    expect(submit(section).disabled).toBe(true);
    section.dispose();
  });

  it("submits a job with the form's options, follows it and opens the fetched notebook", async () => {
    let finished = false;
    const result = {
      job_id: 'op2abc',
      backend: 'swarm',
      state: 'succeeded',
      message: 'exit 0',
      output_path: 'nb.op2abc.envpack.ipynb'
    };
    server.on('POST', 'operations', r =>
      json(
        operation({
          id: 'op2',
          kind: 'job',
          options: JSON.parse(r.body!).options
        }),
        202
      )
    );
    server.on('GET', 'operations/op2/events', () =>
      sse(
        finished
          ? []
          : [
              frame(1, 'progress', {
                stage: 'push',
                kind: 'step',
                message: 'pushing 127.0.0.1:5000/envpack/nb'
              }),
              frame(2, 'progress', { stage: 'job', kind: 'log', message: EVIL })
            ]
      )
    );
    server.on('GET', 'operations/op2', () =>
      json(
        operation({
          id: 'op2',
          kind: 'job',
          ...(finished ? { state: 'succeeded', result } : {})
        })
      )
    );
    model.path = 'nb.ipynb';
    const section = attach();
    await model.refreshStatus();
    section.node.querySelector<HTMLInputElement>(
      '.jp-Envpack-registry'
    )!.value = ' 127.0.0.1:5000 ';
    section.node.querySelector<HTMLInputElement>(
      '.jp-Envpack-schedule'
    )!.value = '0 6 * * *';
    section.node.querySelector<HTMLTextAreaElement>('textarea')!.value =
      'n = 3';
    submit(section).click();
    await tick();
    const body = JSON.parse(server.requestsTo('POST', 'operations')[0].body!);
    expect(body).toEqual({
      kind: 'job',
      path: 'nb.ipynb',
      options: {
        backend: 'swarm',
        registry: '127.0.0.1:5000',
        schedule: '0 6 * * *',
        parameters: { n: 3 }
      }
    });
    const view = section.node.querySelector<HTMLElement>(
      '.jp-Envpack-operation'
    )!;
    expect(view.dataset.operation).toBe('op2');
    expect(view.querySelector('pre')!.textContent).toContain(
      '==> pushing 127.0.0.1:5000/envpack/nb'
    );
    expect(view.querySelector('pre')!.textContent).toContain('<script>');
    expect(document.body.querySelector('img, script')).toBeNull();
    finished = true;
    await model.waitFor('op2');
    await tick();
    expect(section.node.querySelector('.jp-Envpack-jobId')!.textContent).toBe(
      'op2abc'
    );
    expect(section.node.textContent).toContain('on swarm — succeeded: exit 0');
    section.node
      .querySelector<HTMLAnchorElement>(
        '.jp-Envpack-result .jp-Envpack-openOutput'
      )!
      .click();
    expect(opened).toEqual(['nb.op2abc.envpack.ipynb']);
    expect((window as any).__pwned).toBeUndefined();
    section.dispose();
  });

  it('does not submit bad parameters', async () => {
    server.on('POST', 'operations', () =>
      json(operation({ kind: 'job' }), 202)
    );
    model.path = 'nb.ipynb';
    const section = attach();
    await model.refreshStatus();
    section.node.querySelector<HTMLTextAreaElement>('textarea')!.value =
      'not a parameter';
    submit(section).click();
    await tick();
    expect(server.requestsTo('POST', 'operations')).toHaveLength(0);
    expect(
      section.node.querySelector('.jp-Envpack-error')!.textContent
    ).toMatch(/Parameter line 1/);
    section.dispose();
  });

  it('lists job operations from GET operations?kind=job, with log, cancel and the result link', async () => {
    server.on('GET', 'operations', r => {
      expect(r.url.searchParams.get('kind')).toBe('job');
      return json({
        operations: [
          operation({
            id: 'j2',
            kind: 'job',
            state: 'running',
            created: 20,
            options: { backend: 'kubernetes' }
          }),
          operation({
            id: 'j1',
            kind: 'job',
            state: 'succeeded',
            created: 10,
            result: {
              job_id: 'j1',
              backend: 'swarm',
              output_path: 'out/nb.ipynb'
            }
          }),
          operation({
            id: 'j0',
            kind: 'job',
            state: 'failed',
            path: 'other.ipynb',
            created: 5
          })
        ]
      });
    });
    server.on(
      'GET',
      'operations/j2/events',
      () => new Promise<Response>(() => undefined)
    ); // stays open
    server.on('GET', 'operations/j1/events', () =>
      sse([frame(7, 'progress', { kind: 'log', message: 'cell 1 done' })])
    );
    server.on('GET', 'operations/j1', () =>
      json(
        operation({
          id: 'j1',
          kind: 'job',
          state: 'succeeded',
          result: {
            job_id: 'j1',
            backend: 'swarm',
            output_path: 'out/nb.ipynb'
          }
        })
      )
    );
    server.on('DELETE', 'operations/j2', () =>
      json(operation({ id: 'j2', kind: 'job', state: 'cancelled' }), 202)
    );
    model.path = 'nb.ipynb';
    await model.refreshStatus();
    const section = attach();
    section.node
      .querySelector<HTMLButtonElement>('.jp-Envpack-refreshJobs')!
      .click();
    await tick();
    let items =
      section.node.querySelectorAll<HTMLDetailsElement>('.jp-Envpack-job');
    expect(Array.from(items).map(i => i.dataset.operation)).toEqual([
      'j2',
      'j1'
    ]);
    expect(items[0].querySelector('summary')!.textContent).toContain(
      'running kubernetes nb.ipynb'
    );

    // expand the finished job: its log is replayed and its notebook can be opened
    items[1].open = true;
    items[1].dispatchEvent(new Event('toggle'));
    await tick();
    expect(items[1].querySelector('pre')!.textContent).toContain('cell 1 done');
    items[1]
      .querySelector<HTMLAnchorElement>('.jp-Envpack-openOutput')!
      .click();
    expect(opened).toEqual(['out/nb.ipynb']);

    // cancel the running one from its view
    items[0].open = true;
    items[0].dispatchEvent(new Event('toggle'));
    items[0].querySelector<HTMLButtonElement>('.jp-Envpack-cancel')!.click();
    await tick();
    expect(server.requestsTo('DELETE', 'operations/j2')).toHaveLength(1);
    expect(model.getOperation('j2')!.state).toBe('cancelled');

    // all notebooks
    const filter = section.node.querySelector<HTMLInputElement>(
      '.jp-Envpack-filter input'
    )!;
    filter.checked = false;
    filter.dispatchEvent(new Event('change'));
    items =
      section.node.querySelectorAll<HTMLDetailsElement>('.jp-Envpack-job');
    expect(items).toHaveLength(3);
    section.dispose();
  });
});
