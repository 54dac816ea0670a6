/**
 * A small in-memory envpack server behind `ServerConnection.ISettings.fetch`: the seam JupyterLab
 * itself offers, so the client runs unchanged (URL building, headers, error mapping).
 */
import { ServerConnection } from '@jupyterlab/services';
import * as fs from 'fs';
import * as path from 'path';
import { ReadableStream } from 'stream/web';
import { TextEncoder } from 'util';

import { IOperation } from '../tokens';

export interface IRecordedRequest {
  method: string;
  url: URL;
  headers: Headers;
  body: string | null;
}

type Handler = (request: IRecordedRequest) => Response | Promise<Response>;

export const BASE_URL = 'http://localhost:8888/lab-base/';

export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json' }
  });
}

/**
 * An SSE response whose body arrives in the given chunks (then ends, or breaks like a dropped
 * connection).
 */
export function sse(
  chunks: string[],
  options: { breakAtEnd?: boolean } = {}
): Response {
  const encoder = new TextEncoder();
  let sent = false;
  const stream = new ReadableStream<Uint8Array>({
    // The end (or the break) comes only once the reader has taken the chunks, like a network
    // failure after some bytes; erroring right away would discard the queued chunks.
    pull(controller) {
      if (!sent) {
        sent = true;
        chunks.forEach(chunk => controller.enqueue(encoder.encode(chunk)));
      } else if (options.breakAtEnd) {
        controller.error(new TypeError('network error'));
      } else {
        controller.close();
      }
    }
  });
  return new Response(stream as any, {
    headers: { 'Content-Type': 'text/event-stream' }
  });
}

/**
 * One SSE frame as the server writes it.
 */
export function frame(
  seq: number | null,
  type: string,
  data: Record<string, unknown>
): string {
  const id = seq === null ? '' : `id: ${seq}\n`;
  return `${id}event: ${type}\ndata: ${JSON.stringify({ ...data, type })}\n\n`;
}

export function operation(overrides: Partial<IOperation> = {}): IOperation {
  return {
    id: 'op1',
    kind: 'build',
    state: 'running',
    path: 'nb.ipynb',
    progress: null,
    result: null,
    error: null,
    created: 1764081000,
    ...overrides
  };
}

/**
 * One answer of the real server, recorded by
 * `tests/integration/server/test_server_recorded.py` (ids and times normalised).
 */
export interface IRecording {
  method: string;
  /**
   * The route under `envpack/`, with `:id` for an operation id.
   */
  route: string;
  status: number;
  body: unknown;
}

export const RECORDED_DIR = path.join(__dirname, 'recorded');

export function recordingNames(): string[] {
  return fs
    .readdirSync(RECORDED_DIR)
    .filter(name => name.endsWith('.json'))
    .map(name => name.slice(0, -'.json'.length))
    .sort();
}

export function recording(name: string): IRecording {
  const text = fs.readFileSync(path.join(RECORDED_DIR, `${name}.json`), 'utf8');
  return JSON.parse(text) as IRecording;
}

/**
 * The recorded answer as the server sent it: JSON, an event stream or plain text.
 */
export function replay(name: string): Response {
  const { route, status, body } = recording(name);
  if (typeof body !== 'string') {
    return json(body, status);
  }
  if (route.endsWith('/events')) {
    return sse([body]);
  }
  return new Response(body, {
    status,
    headers: { 'Content-Type': 'text/plain; charset=UTF-8' }
  });
}

/**
 * The JSON shape of a value: keys and types, a list's items merged, `null` fitting anything.
 * The same rules as the Python side's `shape()` of the recordings.
 */
export function shapeOf(value: unknown): unknown {
  if (value === null || value === undefined) {
    return null;
  }
  if (Array.isArray(value)) {
    return [value.map(shapeOf).reduce(mergeShapes, null)];
  }
  if (typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>).map(([k, v]) => [
        k,
        shapeOf(v)
      ])
    );
  }
  return typeof value;
}

function mergeShapes(a: unknown, b: unknown): unknown {
  if (isObject(a) && isObject(b)) {
    return { ...b, ...a };
  }
  return a === null ? b : a;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return !!value && typeof value === 'object' && !Array.isArray(value);
}

/**
 * Where a fake answer departs from the real one: a key the server never sends, or a type it
 * never has (keys the fake leaves out are fine: a test builds only what it reads).
 */
export function misfits(fake: unknown, real: unknown, where = '$'): string[] {
  const [f, r] = [shapeOf(fake), shapeOf(real)];
  return shapeMisfits(f, r, where);
}

function shapeMisfits(fake: unknown, real: unknown, where: string): string[] {
  if (fake === null || real === null) {
    return [];
  }
  if (isObject(fake) && isObject(real)) {
    return Object.keys(fake).flatMap(key =>
      key in real
        ? shapeMisfits(fake[key], real[key], `${where}.${key}`)
        : [`${where}.${key}: the server never sends it`]
    );
  }
  if (Array.isArray(fake) && Array.isArray(real)) {
    return shapeMisfits(fake[0], real[0], `${where}[]`);
  }
  return JSON.stringify(fake) === JSON.stringify(real)
    ? []
    : [
        `${where}: ${JSON.stringify(fake)} where the server sends ${JSON.stringify(real)}`
      ];
}

export class FakeServer {
  constructor() {
    this.settings = ServerConnection.makeSettings({
      baseUrl: BASE_URL,
      token: 'secret-token',
      fetch: (input: RequestInfo | URL, init?: RequestInit) =>
        this._fetch(input, init)
    } as Partial<ServerConnection.ISettings>);
  }

  readonly settings: ServerConnection.ISettings;
  readonly requests: IRecordedRequest[] = [];

  /**
   * Answer `METHOD envpack/<route>` (route without the query string).
   */
  on(method: string, route: string, handler: Handler): this {
    this._routes.set(`${method} ${route}`, handler);
    return this;
  }

  /**
   * Answer with a recording of the real server at its own route (`:id` becomes `id`).
   */
  replaying(name: string, id = 'op1'): this {
    const { method, route } = recording(name);
    return this.on(method, route.replace(':id', id), () => replay(name));
  }

  requestsTo(method: string, route: string): IRecordedRequest[] {
    return this.requests.filter(
      r => r.method === method && this._route(r.url) === route
    );
  }

  private _route(url: URL): string {
    const prefix = new URL(BASE_URL).pathname + 'envpack/';
    return url.pathname.startsWith(prefix)
      ? url.pathname.slice(prefix.length)
      : url.pathname;
  }

  private async _fetch(
    input: RequestInfo | URL,
    init?: RequestInit
  ): Promise<Response> {
    const request =
      input instanceof Request ? input : new Request(String(input), init);
    const recorded: IRecordedRequest = {
      method: request.method,
      url: new URL(request.url),
      headers: request.headers,
      body:
        request.method === 'GET' || request.method === 'HEAD'
          ? null
          : await request.text()
    };
    this.requests.push(recorded);
    const handler = this._routes.get(
      `${recorded.method} ${this._route(recorded.url)}`
    );
    if (!handler) {
      return json({ message: 'Not Found', reason: 'not-found' }, 404);
    }
    return handler(recorded);
  }

  private _routes = new Map<string, Handler>();
}
