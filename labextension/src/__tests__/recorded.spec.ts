/**
 * The fake server against the real one: the recordings in `recorded/` are real answers of a
 * jupyter server with envpack (written by tests/integration/server/test_server_recorded.py,
 * which fails when they are stale). Here the client reads each of them, and the fake's own
 * builders are checked to send nothing the real server would not.
 */
import { EnvpackClient, EnvpackRequestError } from '../api';
import { IOperationEvent } from '../tokens';
import {
  FakeServer,
  frame,
  misfits,
  operation,
  recording,
  recordingNames,
  sse
} from './fakeserver';

describe('the recordings of the real server', () => {
  let server: FakeServer;
  let client: EnvpackClient;

  beforeEach(() => {
    server = new FakeServer();
    client = new EnvpackClient({ serverSettings: server.settings });
  });

  it('cover every route the sidebar calls', () => {
    const routes = new Set(
      recordingNames().map(name => {
        const { method, route } = recording(name);
        return `${method} ${route}`;
      })
    );
    expect([...routes].sort()).toEqual([
      'DELETE operations/:id',
      'GET binder',
      'GET dockerfile',
      'GET operations',
      'GET operations/:id',
      'GET operations/:id/events',
      'GET snapshot',
      'GET status',
      'POST operations'
    ]);
  });

  it('give the client a status, a snapshot, a Dockerfile and a Binder link', async () => {
    ['status', 'snapshot', 'dockerfile', 'binder'].forEach(name =>
      server.replaying(name)
    );
    const status = await client.getStatus();
    expect(status.kinds).toEqual(expect.arrayContaining(['build', 'run']));
    expect(typeof status.engine?.reachable).toBe('boolean');
    const snapshot = await client.getSnapshot('nb.ipynb');
    expect(snapshot.schema).toBe('envpack.snapshot/1');
    expect(typeof snapshot.hash).toBe('string');
    expect(await client.getDockerfile('nb.ipynb')).toMatch(/^# Generated/);
    const binder = await client.getBinder('nb.ipynb');
    expect(binder).toEqual(expect.any(Object));
  });

  it('give the client a build and a run that succeeded, with a report', async () => {
    server.replaying('build-started');
    const started = await client.startOperation({
      kind: 'build',
      path: 'nb.ipynb'
    });
    expect(['queued', 'running']).toContain(started.state);
    server.replaying('build-succeeded', 'b').replaying('run-succeeded', 'r');
    const built = await client.getOperation('b');
    expect(built.state).toBe('succeeded');
    expect(typeof (built.result as any).image).toBe('string');
    const ran = await client.getOperation('r');
    const report = (ran.result as any).report;
    expect(report.cells.map((c: any) => c.status)).toEqual(['same']);
    server.replaying('operations');
    const listed = await client.listOperations();
    expect(listed.map(op => op.kind).sort()).toEqual(['build', 'run']);
  });

  it('give the client an event stream and an events page that end in success', async () => {
    server.replaying('run-events', 'r'); // one route: ?format=json is the page
    const events: IOperationEvent[] = [];
    const last = await client.streamEvents('r', e => events.push(e));
    server.replaying('run-events-json', 'r');
    expect(last).toMatch(/^\d+$/);
    const states = events.filter(e => e.type === 'state').map(e => e.state);
    expect(states[states.length - 1]).toBe('succeeded');
    expect(events.some(e => e.type === 'progress')).toBe(true);
    const page = await client.eventsPage('r', null);
    expect(page.done).toBe(true);
    const streamed = events.map(e => e.type);
    expect(streamed[streamed.length - 1]).toBe('end'); // the stream's own last word
    expect(page.events.map(e => e.type)).toEqual(streamed.slice(0, -1));
  });

  it.each([
    ['not-found', 404, 'not-found'],
    ['bad-request', 400, 'invalid-input'],
    ['cancel-finished', 409, 'conflict']
  ])(
    'turn the %s answer into an error with a hint',
    async (name, status, reason) => {
      server.replaying(name, 'x');
      const { method } = recording(name);
      const call =
        method === 'DELETE'
          ? client.cancelOperation('x')
          : method === 'POST'
            ? client.startOperation({ kind: 'build', path: 3 as any })
            : client.getOperation('x');
      const error = await call.then(
        () => null,
        (e: unknown) => e
      );
      expect(error).toBeInstanceOf(EnvpackRequestError);
      expect(error).toMatchObject({ status, reason, hint: expect.any(String) });
    }
  );
});

describe('the fake server', () => {
  it('builds operations the real server could send', () => {
    for (const name of ['build-succeeded', 'run-succeeded', 'build-started']) {
      expect(misfits(operation(), recording(name).body)).toEqual([]);
    }
    const real = recording('run-succeeded').body;
    expect(misfits(operation({ kind: 'run', state: 'failed' }), real)).toEqual(
      []
    );
    expect(misfits({ ...operation(), status: 'running' }, real)).toEqual([
      '$.status: the server never sends it'
    ]);
  });

  it('writes event frames the way the real server does', async () => {
    const server = new FakeServer();
    const client = new EnvpackClient({ serverSettings: server.settings });
    server.replaying('run-events', 'real');
    const real: IOperationEvent[] = [];
    await client.streamEvents('real', e => real.push(e));
    server.on('GET', 'operations/fake/events', () =>
      sse([
        frame(1, 'state', { state: 'running' }),
        frame(2, 'progress', { stage: 'build', message: 'm', kind: 'step' })
      ])
    );
    const fake: IOperationEvent[] = [];
    await client.streamEvents('fake', e => fake.push(e));
    expect(real.length).toBeGreaterThan(2);
    expect(fake.length).toBe(2);
    for (const event of fake) {
      const twin = real.find(e => e.type === event.type);
      expect(twin).toBeDefined();
      expect(misfits(event, twin)).toEqual([]);
    }
  });

  it('answers errors in the real server shape', async () => {
    const server = new FakeServer();
    const unknown = await fetchUnrouted(server);
    expect(misfits(unknown, recording('not-found').body)).toEqual([]);
  });
});

async function fetchUnrouted(server: FakeServer): Promise<unknown> {
  const response = await server.settings.fetch(
    `${server.settings.baseUrl}envpack/nowhere`,
    {}
  );
  return response.json();
}
