/**
 * A small in-memory envpack server behind `ServerConnection.ISettings.fetch`: the seam JupyterLab
 * itself offers, so the client runs unchanged (URL building, headers, error mapping).
 */
import { ServerConnection } from '@jupyterlab/services';
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
