import { EnvpackClient } from '../api';
import { EnvpackModel } from '../model';
import { IOperation } from '../tokens';
import { FakeServer, frame, json, operation, sse } from './fakeserver';

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>(r => (resolve = r));
  return { promise, resolve };
}

function snapshotFor(path: string): Record<string, unknown> {
  return {
    schema: 'envpack.snapshot/1',
    notebook: path,
    python: { version: '3.11.7' },
    packages: [],
    local_files: [],
    warnings: [],
    hash: `hash-of-${path}`
  };
}

describe('EnvpackModel', () => {
  let server: FakeServer;
  let model: EnvpackModel;

  beforeEach(() => {
    server = new FakeServer();
    server.on('GET', 'snapshot', r =>
      json(snapshotFor(r.url.searchParams.get('path')!))
    );
    server.on('GET', 'dockerfile', () => new Response('FROM base\n'));
    model = new EnvpackModel({
      client: new EnvpackClient({ serverSettings: server.settings }),
      retryDelay: 1
    });
  });

  afterEach(() => model.dispose());

  it('loads the snapshot and the Dockerfile when it starts following a notebook', async () => {
    const kinds: string[] = [];
    model.changed.connect((_, kind) => void kinds.push(kind));
    model.path = 'a.ipynb';
    await model.refresh();
    expect(model.snapshot?.hash).toBe('hash-of-a.ipynb');
    expect(model.dockerfile).toBe('FROM base\n');
    expect(model.snapshotLoading).toBe(false);
    expect(kinds).toEqual(
      expect.arrayContaining(['path', 'snapshot', 'dockerfile'])
    );
  });

  it('never shows a stale snapshot after switching notebooks quickly', async () => {
    const slow = deferred<Response>();
    server.on('GET', 'snapshot', r =>
      r.url.searchParams.get('path') === 'slow.ipynb'
        ? slow.promise
        : json(snapshotFor('fast.ipynb'))
    );
    model.path = 'slow.ipynb';
    model.path = 'fast.ipynb';
    await model.refreshSnapshot();
    slow.resolve(json(snapshotFor('slow.ipynb')));
    await new Promise(r => setTimeout(r, 10));
    expect(model.snapshot?.hash).toBe('hash-of-fast.ipynb');
  });

  it('shows the server error message when the snapshot fails', async () => {
    server.on('GET', 'snapshot', () =>
      json(
        {
          reason: 'probe-failed',
          message: 'kernel python9 not found',
          hint: 'install it'
        },
        422
      )
    );
    model.path = 'a.ipynb';
    await model.refreshSnapshot();
    expect(model.snapshotError).toBe('kernel python9 not found (install it)');
  });

  it('sends the base image setting with builds, runs and the Dockerfile preview', async () => {
    server.on('POST', 'operations', r =>
      json(operation({ ...JSON.parse(r.body!), state: 'succeeded' }), 202)
    );
    model.settings = {
      baseImage: 'envpack-test/debian-python:bookworm',
      rerunAfterBuild: true
    };
    model.path = 'nb.ipynb';
    await model.build();
    await model.run('nb.ipynb', { parameters: { n: 3 } });
    const bodies = server
      .requestsTo('POST', 'operations')
      .map(r => JSON.parse(r.body!));
    expect(bodies).toEqual([
      {
        kind: 'build',
        path: 'nb.ipynb',
        options: { base_image: 'envpack-test/debian-python:bookworm' }
      },
      {
        kind: 'run',
        path: 'nb.ipynb',
        options: {
          parameters: { n: 3 },
          base_image: 'envpack-test/debian-python:bookworm'
        }
      }
    ]);
    await model.refreshDockerfile();
    const last = server.requestsTo('GET', 'dockerfile').pop()!;
    expect(last.url.searchParams.get('base_image')).toBe(
      'envpack-test/debian-python:bookworm'
    );
  });

  it.each([
    [true, 'run'],
    [false, 'build']
  ])(
    'containerise with rerunAfterBuild=%s starts one %s operation',
    async (rerun, kind) => {
      server.on('POST', 'operations', r =>
        json(operation({ ...JSON.parse(r.body!), state: 'queued' }), 202)
      );
      server.on('GET', 'operations/op1', () =>
        json(operation({ kind, state: 'succeeded' }))
      );
      model.settings = { baseImage: '', rerunAfterBuild: rerun };
      const op = await model.containerise('nb.ipynb');
      expect(op.kind).toBe(kind);
      expect(
        JSON.parse(server.requestsTo('POST', 'operations')[0].body!)
      ).toEqual({
        kind,
        path: 'nb.ipynb',
        options: {}
      });
      await model.waitFor(op.id);
    }
  );

  it('a second Containerise click while the first is running shows it instead of starting again', async () => {
    server.on('POST', 'operations', () =>
      json(operation({ kind: 'run', state: 'running' }), 202)
    );
    server.on('GET', 'operations/op1/events', () => sse([]));
    server.on('GET', 'operations/op1', () =>
      json(operation({ kind: 'run', state: 'running' }))
    );
    const first = await model.containerise('nb.ipynb');
    const second = await model.containerise('nb.ipynb');
    expect(second.id).toBe(first.id);
    expect(server.requestsTo('POST', 'operations')).toHaveLength(1);
  });

  it('follows an operation: progress, steps and log lines, then the result', async () => {
    server.on('POST', 'operations', () => json(operation(), 202));
    server.on('GET', 'operations/op1/events', () =>
      sse([
        frame(1, 'progress', {
          stage: 'build',
          kind: 'step',
          message: 'Step 1/2 : FROM base',
          progress: 0.5
        }),
        frame(2, 'progress', {
          stage: 'build',
          kind: 'log',
          message: '<script>alert(1)</script>\nsecond line'
        }),
        frame(3, 'progress', {
          stage: 'build',
          kind: 'progress',
          message: 'ignored',
          progress: 0.9
        }),
        frame(4, 'state', { state: 'succeeded' }),
        'event: end\ndata: {"state": "succeeded"}\n\n'
      ])
    );
    const result = { image: 'envpack/nb:abc', cached: false, duration: 3.5 };
    server.on('GET', 'operations/op1', () =>
      json(operation({ state: 'succeeded', result, progress: 1 }))
    );
    const progress: Array<number | null | undefined> = [];
    model.operationChanged.connect((_, op) => void progress.push(op.progress));
    const op = await model.build('nb.ipynb');
    const done = await model.waitFor(op.id);
    expect(done.result).toEqual(result);
    expect(progress).toContain(0.5);
    expect(progress).toContain(0.9);
    expect(model.log('op1')).toEqual([
      '==> Step 1/2 : FROM base',
      '<script>alert(1)</script>',
      'second line'
    ]);
    expect(model.latest('build', 'nb.ipynb')?.state).toBe('succeeded');
    // A finished operation refreshes the server status (engine up or down) for the header.
    expect(server.requestsTo('GET', 'status')).toHaveLength(1);
  });

  it('reconnects a dropped event stream and resumes after the last event id', async () => {
    let calls = 0;
    let state: IOperation['state'] = 'running';
    server.on('GET', 'operations/op1/events', () => {
      calls += 1;
      if (calls === 1) {
        return sse([frame(41, 'progress', { kind: 'log', message: 'first' })]); // dropped
      }
      state = 'succeeded';
      return sse([
        frame(42, 'progress', { kind: 'log', message: 'second' }),
        frame(43, 'state', { state })
      ]);
    });
    server.on('GET', 'operations/op1', () => json(operation({ state })));
    server.on('GET', 'operations', () => json({ operations: [operation()] }));
    await model.reconnect();
    await model.waitFor('op1');
    const streams = server.requestsTo('GET', 'operations/op1/events');
    expect(streams[0].headers.get('Last-Event-ID')).toBeNull();
    expect(streams[1].headers.get('Last-Event-ID')).toBe('41');
    expect(model.log('op1')).toEqual(['first', 'second']);
  });

  it('resumes after the last delivered event when a stream breaks mid-way (no duplicate lines)', async () => {
    let calls = 0;
    let state: IOperation['state'] = 'running';
    server.on('GET', 'operations/op1/events', () => {
      calls += 1;
      if (calls === 1) {
        return sse([frame(41, 'progress', { kind: 'log', message: 'first' })], {
          breakAtEnd: true
        });
      }
      state = 'succeeded';
      return sse([frame(42, 'progress', { kind: 'log', message: 'second' })]);
    });
    server.on('GET', 'operations/op1', () => json(operation({ state })));
    server.on('GET', 'operations', () => json({ operations: [operation()] }));
    await model.reconnect();
    await model.waitFor('op1');
    expect(
      server
        .requestsTo('GET', 'operations/op1/events')[1]
        .headers.get('Last-Event-ID')
    ).toBe('41');
    expect(model.log('op1')).toEqual(['first', 'second']);
  });

  it('polls JSON event pages instead of streaming beyond maxStreams', async () => {
    const polling = new EnvpackModel({
      client: new EnvpackClient({ serverSettings: server.settings }),
      retryDelay: 1,
      pollInterval: 1,
      maxStreams: 0
    });
    const pages: Record<string, unknown> = {
      none: {
        events: [
          { seq: 1, type: 'progress', kind: 'log', message: 'a' },
          { seq: 2, type: 'progress', kind: 'log', message: 'b' }
        ],
        last: 2,
        done: false
      },
      '2': {
        events: [{ seq: 3, type: 'state', state: 'succeeded' }],
        last: 3,
        done: true
      }
    };
    server.on('GET', 'operations/op1/events', r =>
      json(pages[r.url.searchParams.get('after') ?? 'none'])
    );
    server.on('GET', 'operations/op1', () =>
      json(
        operation({ state: 'succeeded', result: { image: 'i', cached: true } })
      )
    );
    server.on('GET', 'operations', () => json({ operations: [operation()] }));
    await polling.reconnect();
    const done = await polling.waitFor('op1');
    expect(done.result).toEqual({ image: 'i', cached: true });
    expect(polling.log('op1')).toEqual(['a', 'b']);
    const requests = server.requestsTo('GET', 'operations/op1/events');
    expect(
      requests.every(r => r.url.searchParams.get('format') === 'json')
    ).toBe(true);
    expect(requests.map(r => r.url.searchParams.get('after'))).toEqual([
      null,
      '2'
    ]);
    polling.dispose();
  });

  it('marks an operation the server no longer knows as lost', async () => {
    server.on('GET', 'operations', () => json({ operations: [operation()] }));
    server.on('GET', 'operations/op1/events', () =>
      json({ message: 'gone' }, 404)
    );
    server.on('GET', 'operations/op1', () =>
      json({ message: 'gone', reason: 'not-found' }, 404)
    );
    await model.reconnect();
    expect((await model.waitFor('op1')).state).toBe('lost');
  });

  it('never brings a finished operation back to running', async () => {
    server.on('GET', 'operations', () =>
      json({ operations: [operation({ state: 'failed' })] })
    );
    await model.refreshOperations();
    server.on('GET', 'operations', () =>
      json({ operations: [operation({ state: 'running' })] })
    );
    await model.refreshOperations();
    expect(model.getOperation('op1')?.state).toBe('failed');
  });

  it('sorts the history newest first and cancels through DELETE', async () => {
    server.on('GET', 'operations', () =>
      json({
        operations: [
          operation({ id: 'old', created: 10 }),
          operation({ id: 'new', created: 20 })
        ]
      })
    );
    server.on('DELETE', 'operations/new', () =>
      json(operation({ id: 'new', state: 'cancelled' }), 202)
    );
    server.on('GET', 'operations/new/events', () => sse([]));
    server.on('GET', 'operations/old/events', () => sse([]));
    server.on('GET', 'operations/old', () =>
      json(operation({ id: 'old', state: 'succeeded' }))
    );
    server.on('GET', 'operations/new', () =>
      json(operation({ id: 'new', state: 'cancelled' }))
    );
    await model.refreshOperations();
    expect(model.operations.map(o => o.id)).toEqual(['new', 'old']);
    await model.cancel('new');
    expect(model.getOperation('new')?.state).toBe('cancelled');
  });

  it('cuts very long log lines so a 10 MB line cannot freeze the page (RELIABILITY A7)', async () => {
    server.on('POST', 'operations', () => json(operation(), 202));
    server.on('GET', 'operations/op1/events', () =>
      sse([
        frame(1, 'progress', { kind: 'log', message: 'x'.repeat(200000) }),
        frame(2, 'state', { state: 'failed' })
      ])
    );
    server.on('GET', 'operations/op1', () =>
      json(operation({ state: 'failed', error: { message: 'boom' } }))
    );
    await model.build('nb.ipynb');
    await model.waitFor('op1');
    expect(model.log('op1')[0].length).toBe(64 * 1024 + 1);
  });
});
