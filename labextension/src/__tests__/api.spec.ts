import * as fs from 'fs';
import * as path from 'path';

import { EnvpackClient, EnvpackRequestError, toOperationEvent } from '../api';
import { IOperationEvent } from '../tokens';
import { FakeServer, frame, json, operation, sse } from './fakeserver';

describe('EnvpackClient', () => {
  let server: FakeServer;
  let client: EnvpackClient;

  beforeEach(() => {
    server = new FakeServer();
    client = new EnvpackClient({ serverSettings: server.settings });
  });

  it('asks for the snapshot under <baseUrl>/envpack with the path percent-encoded and the token', async () => {
    server.on('GET', 'snapshot', () =>
      json({ schema: 'envpack.snapshot/1', hash: 'h' })
    );
    const snapshot = await client.getSnapshot('my dir/a#b?.ipynb');
    expect(snapshot.hash).toBe('h');
    const [request] = server.requestsTo('GET', 'snapshot');
    expect(request.url.pathname).toBe('/lab-base/envpack/snapshot');
    expect(request.url.searchParams.get('path')).toBe('my dir/a#b?.ipynb');
    expect(request.headers.get('Authorization')).toBe('token secret-token');
  });

  it('passes the base image to the Dockerfile preview only when set', async () => {
    server.on('GET', 'dockerfile', () => new Response('FROM x\n'));
    expect(await client.getDockerfile('nb.ipynb')).toBe('FROM x\n');
    await client.getDockerfile(
      'nb.ipynb',
      'envpack-test/debian-python:bookworm'
    );
    const [first, second] = server.requestsTo('GET', 'dockerfile');
    expect(first.url.searchParams.has('base_image')).toBe(false);
    expect(second.url.searchParams.get('base_image')).toBe(
      'envpack-test/debian-python:bookworm'
    );
  });

  it.each([
    [
      503,
      {
        error: 'EngineError',
        reason: 'engine-unavailable',
        message: 'Docker engine not reachable: connection refused',
        hint: 'start dockerd'
      }
    ],
    [
      404,
      {
        error: 'NotFoundError',
        reason: 'not-found',
        message: "no notebook at 'x.ipynb'",
        hint: null
      }
    ],
    [409, { reason: 'conflict', message: 'operation already finished' }],
    [413, { reason: 'too-large', message: 'notebook too large' }],
    [422, { reason: 'bad-notebook', message: 'not a readable notebook' }]
  ])(
    'maps a %i JSON error to a readable EnvpackRequestError (RELIABILITY K1)',
    async (status, body) => {
      server.on('GET', 'snapshot', () => json(body, status));
      const error: EnvpackRequestError = await client
        .getSnapshot('x.ipynb')
        .catch(e => e);
      expect(error).toBeInstanceOf(EnvpackRequestError);
      expect(error.status).toBe(status);
      expect(error.reason).toBe(body.reason);
      expect(error.message).toBe(body.message);
      expect(error.userMessage).toBe(
        (body as any).hint
          ? `${body.message} (${(body as any).hint})`
          : body.message
      );
    }
  );

  it('maps a non-JSON error page (proxy) to its status line', async () => {
    server.on(
      'GET',
      'status',
      () =>
        new Response('<html>bad gateway</html>', {
          status: 502,
          statusText: 'Bad Gateway'
        })
    );
    const error: EnvpackRequestError = await client.getStatus().catch(e => e);
    expect(error.status).toBe(502);
    expect(error.message).toBe('502 Bad Gateway');
  });

  it('maps a network failure to status 0 with a readable message', async () => {
    const broken = new EnvpackClient({
      serverSettings: {
        ...server.settings,
        fetch: () => Promise.reject(new TypeError('Failed to fetch'))
      }
    });
    const error: EnvpackRequestError = await broken
      .getSnapshot('nb.ipynb')
      .catch(e => e);
    expect(error.status).toBe(0);
    expect(error.reason).toBe('network');
    expect(error.message).toMatch(/Cannot reach the Jupyter server/);
  });

  it('POSTs operations once (no retry) and reads the operation back', async () => {
    server.on('POST', 'operations', () =>
      json({ error: 'x', message: 'boom' }, 500)
    );
    await expect(
      client.startOperation({ kind: 'build', path: 'nb.ipynb' })
    ).rejects.toThrow('boom');
    expect(server.requestsTo('POST', 'operations')).toHaveLength(1);
    server.on('POST', 'operations', r =>
      json(operation({ options: JSON.parse(r.body!).options }), 202)
    );
    const op = await client.startOperation({
      kind: 'build',
      path: 'nb.ipynb',
      options: { base_image: 'b' }
    });
    expect(op.options).toEqual({ base_image: 'b' });
    expect(
      JSON.parse(server.requestsTo('POST', 'operations')[1].body!)
    ).toEqual({
      kind: 'build',
      path: 'nb.ipynb',
      options: { base_image: 'b' }
    });
  });

  it('lists operations from {"operations": [...]} and cancels with DELETE', async () => {
    server.on('GET', 'operations', () => json({ operations: [operation()] }));
    server.on('DELETE', 'operations/op1', () =>
      json(operation({ state: 'cancelled' }), 202)
    );
    expect((await client.listOperations()).map(o => o.id)).toEqual(['op1']);
    expect((await client.cancelOperation('op1'))?.state).toBe('cancelled');
  });

  it('streams events, resuming with Last-Event-ID, and returns the last id', async () => {
    server.on('GET', 'operations/op1/events', () =>
      sse([
        'retry: 2000\n\n' +
          frame(7, 'progress', { kind: 'log', message: 'Step 1/3' }).slice(
            0,
            20
          ),
        frame(7, 'progress', { kind: 'log', message: 'Step 1/3' }).slice(20),
        frame(8, 'state', { state: 'succeeded' }),
        'event: end\ndata: {"state": "succeeded"}\n\n'
      ])
    );
    const events: IOperationEvent[] = [];
    const last = await client.streamEvents('op1', e => events.push(e), {
      lastEventId: '6'
    });
    expect(
      server
        .requestsTo('GET', 'operations/op1/events')[0]
        .headers.get('Last-Event-ID')
    ).toBe('6');
    expect(events.map(e => [e.type, e.id, e.message ?? e.state])).toEqual([
      ['progress', '7', 'Step 1/3'],
      ['state', '8', 'succeeded'],
      ['end', null, 'succeeded']
    ]);
    expect(last).toBe('8');
  });
});

describe('toOperationEvent', () => {
  it('keeps non-JSON data as a log line and drops non-object JSON', () => {
    expect(
      toOperationEvent({ event: 'message', data: 'plain', id: null })
    ).toEqual({
      type: 'log',
      message: 'plain',
      id: null
    });
    expect(
      toOperationEvent({ event: 'message', data: '42', id: null })
    ).toBeNull();
  });
});

describe('the source tree', () => {
  it('never calls fetch directly: every request goes through ServerConnection (RELIABILITY K1)', () => {
    const root = path.resolve(__dirname, '..');
    const offenders: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory() && entry.name !== '__tests__') {
          walk(full);
        } else if (
          entry.name.endsWith('.ts') &&
          /(^|[^.\w])fetch\(|XMLHttpRequest|EventSource\(|innerHTML/.test(
            fs.readFileSync(full, 'utf8')
          )
        ) {
          offenders.push(path.relative(root, full));
        }
      }
    };
    walk(root);
    expect(offenders).toEqual([]);
  });
});
