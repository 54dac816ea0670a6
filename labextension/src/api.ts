/**
 * The REST client of the envpack server extension (see docs/api.md).
 *
 * Every request goes through `ServerConnection.makeRequest`, which adds the token and the XSRF header
 * (RELIABILITY K1): this module is the only one that talks to the server, so tests mock it at the
 * `ServerConnection` level and nothing in `src/` calls `fetch` directly.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { SSEParser, IServerSentEvent } from './sse';
import {
  IBinderInfo,
  IBinderWriteResult,
  IOperation,
  IOperationEvent,
  IOperationRequest,
  IServerStatus,
  ISnapshot
} from './tokens';

/**
 * An error answered by the envpack API, carrying what the user needs to fix it.
 */
export class EnvpackRequestError extends Error {
  constructor(options: EnvpackRequestError.IOptions) {
    super(options.message);
    this.name = 'EnvpackRequestError';
    this.status = options.status;
    this.reason = options.reason ?? 'error';
    this.hint = options.hint ?? null;
  }

  /**
   * The HTTP status code (0 when the server could not be reached).
   */
  readonly status: number;

  /**
   * A stable slug naming the kind of error (e.g. `engine-unreachable`).
   */
  readonly reason: string;

  /**
   * How to fix the problem, when the server knows.
   */
  readonly hint: string | null;

  /**
   * The message and the hint in one readable line.
   */
  get userMessage(): string {
    return this.hint ? `${this.message} (${this.hint})` : this.message;
  }
}

export namespace EnvpackRequestError {
  export interface IOptions {
    status: number;
    message: string;
    reason?: string | null;
    hint?: string | null;
  }
}

/**
 * Turn any thrown value into a readable one-line message.
 */
export function errorMessage(err: unknown): string {
  if (err instanceof EnvpackRequestError) {
    return err.userMessage;
  }
  if (err instanceof Error) {
    return err.message;
  }
  return String(err);
}

/**
 * The client of the `/envpack` REST API of one Jupyter server.
 */
export class EnvpackClient {
  constructor(options: EnvpackClient.IOptions = {}) {
    this.serverSettings =
      options.serverSettings ?? ServerConnection.makeSettings();
  }

  /**
   * The connection settings of the server (base URL, token, XSRF, fetch).
   */
  readonly serverSettings: ServerConnection.ISettings;

  /**
   * Take the environment snapshot of a notebook.
   */
  async getSnapshot(
    path: string,
    options: EnvpackClient.IReconstructOptions = {}
  ): Promise<ISnapshot> {
    const params: Record<string, string> = { path };
    if (options.reconstruct) {
      params.reconstruct = '1';
      if (options.as_of) {
        params.as_of = options.as_of;
      }
    }
    return this.requestJSON<ISnapshot>(`snapshot${query(params)}`);
  }

  /**
   * Render the Dockerfile of a notebook.
   */
  async getDockerfile(path: string, baseImage?: string): Promise<string> {
    const params: Record<string, string> = { path };
    if (baseImage) {
      params.base_image = baseImage;
    }
    const response = await this.request(`dockerfile${query(params)}`);
    return response.text();
  }

  /**
   * The state of the server side: engine reachable, versions, defaults.
   */
  async getStatus(): Promise<IServerStatus> {
    return this.requestJSON<IServerStatus>('status');
  }

  /**
   * Start a long operation (build or run). Never retried: a POST may have started work.
   */
  async startOperation(request: IOperationRequest): Promise<IOperation> {
    return this.requestJSON<IOperation>('operations', {
      method: 'POST',
      body: JSON.stringify(request)
    });
  }

  /**
   * How to share a notebook through Binder: link, badges, warnings (with their fixes).
   */
  async getBinder(
    path: string,
    options: EnvpackClient.IBinderOptions = {}
  ): Promise<IBinderInfo> {
    const params: Record<string, string> = { path };
    if (options.host) {
      params.host = options.host;
    }
    if (options.ref) {
      params.ref = options.ref;
    }
    if (options.branch) {
      params.branch = '1';
    }
    if (options.snapshot === false) {
      params.snapshot = '0';
    }
    return this.requestJSON<IBinderInfo>(`binder${query(params)}`);
  }

  /**
   * Write the `binder/` folder at the root of the notebook's repository.
   */
  async writeBinder(path: string): Promise<IBinderWriteResult> {
    return this.requestJSON<IBinderWriteResult>('binder', {
      method: 'POST',
      body: JSON.stringify({ path })
    });
  }

  /**
   * The operations the server knows (optionally of one kind or state), newest first.
   */
  async listOperations(
    filter: EnvpackClient.IOperationFilter = {}
  ): Promise<IOperation[]> {
    const params: Record<string, string> = {};
    if (filter.kind) {
      params.kind = filter.kind;
    }
    if (filter.state) {
      params.state = filter.state;
    }
    if (filter.limit) {
      params.limit = String(filter.limit);
    }
    const body = await this.requestJSON<
      IOperation[] | { operations: IOperation[] }
    >(`operations${query(params)}`);
    return Array.isArray(body) ? body : body.operations;
  }

  /**
   * One operation by id.
   */
  async getOperation(id: string): Promise<IOperation> {
    return this.requestJSON<IOperation>(`operations/${encodeURIComponent(id)}`);
  }

  /**
   * Ask the server to cancel an operation (idempotent on the server side).
   */
  async cancelOperation(id: string): Promise<IOperation | null> {
    const response = await this.request(
      `operations/${encodeURIComponent(id)}`,
      { method: 'DELETE' }
    );
    const text = await response.text();
    return text ? (JSON.parse(text) as IOperation) : null;
  }

  /**
   * Follow the event stream of an operation until the server closes it or `signal` aborts.
   *
   * Each event is passed to `onEvent`; `lastEventId` resumes after the event with that id.
   * Resolves with the id of the last event seen, so a caller can resume after a drop.
   */
  async streamEvents(
    id: string,
    onEvent: (event: IOperationEvent) => void,
    options: EnvpackClient.IStreamOptions = {}
  ): Promise<string | null> {
    const headers: Record<string, string> = { Accept: 'text/event-stream' };
    let lastId = options.lastEventId ?? null;
    if (lastId !== null) {
      headers['Last-Event-ID'] = lastId;
    }
    const response = await this.request(
      `operations/${encodeURIComponent(id)}/events`,
      { headers, signal: options.signal }
    );
    const parser = new SSEParser();
    const deliver = (events: IServerSentEvent[]): void => {
      for (const sse of events) {
        if (sse.id !== null) {
          lastId = sse.id;
        }
        const event = toOperationEvent(sse);
        if (event) {
          onEvent(event);
        }
      }
    };
    const body = response.body;
    if (!body || typeof body.getReader !== 'function') {
      deliver(parser.feed(await response.text()));
      deliver(parser.flush());
      return lastId;
    }
    const reader = body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        break;
      }
      deliver(parser.feed(decoder.decode(value, { stream: true })));
    }
    deliver(parser.feed(decoder.decode()));
    deliver(parser.flush());
    return lastId;
  }

  /**
   * One page of an operation's events after `after` (the polling alternative to the stream).
   */
  async eventsPage(
    id: string,
    after: string | null
  ): Promise<EnvpackClient.IEventsPage> {
    const params: Record<string, string> = { format: 'json' };
    if (after !== null) {
      params.after = after;
    }
    const page = await this.requestJSON<{
      events: Array<Record<string, unknown>>;
      last?: number | null;
      state?: string;
      done?: boolean;
    }>(`operations/${encodeURIComponent(id)}/events${query(params)}`);
    const events = (page.events ?? []).map(
      e =>
        ({
          ...e,
          type: String(e.type ?? 'progress'),
          id: e.seq === undefined || e.seq === null ? null : String(e.seq)
        }) as IOperationEvent
    );
    return { events, done: Boolean(page.done) };
  }

  /**
   * Send a request to `<baseUrl>/envpack/<endpoint>` and parse the JSON answer.
   */
  async requestJSON<T>(endpoint: string, init: RequestInit = {}): Promise<T> {
    const response = await this.request(endpoint, init);
    const text = await response.text();
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new EnvpackRequestError({
        status: response.status,
        reason: 'bad-response',
        message: `The envpack server answered something that is not JSON (${endpoint}).`
      });
    }
  }

  /**
   * Send a request and throw an `EnvpackRequestError` for anything but a 2xx answer.
   */
  async request(endpoint: string, init: RequestInit = {}): Promise<Response> {
    const url = URLExt.join(this.serverSettings.baseUrl, 'envpack', endpoint);
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(
        url,
        init,
        this.serverSettings
      );
    } catch (err) {
      if (isAbort(err)) {
        throw err;
      }
      throw new EnvpackRequestError({
        status: 0,
        reason: 'network',
        message: `Cannot reach the Jupyter server: ${errorMessage(err)}`
      });
    }
    if (!response.ok) {
      throw await responseError(response);
    }
    return response;
  }
}

export namespace EnvpackClient {
  /**
   * Ask for an educated reconstruction of a missing environment (issue 13.2).
   */
  export interface IReconstructOptions {
    reconstruct?: boolean;
    /**
     * Newest release date to consider, `YYYY-MM-DD` (the server's default otherwise).
     */
    as_of?: string;
  }

  export interface IOptions {
    /**
     * The server settings of the app (`app.serviceManager.serverSettings`).
     */
    serverSettings?: ServerConnection.ISettings;
  }

  export interface IEventsPage {
    events: IOperationEvent[];
    /**
     * The operation is finished and every event was returned.
     */
    done: boolean;
  }

  export interface IBinderOptions {
    /**
     * BinderHub base URL (default: the server's, mybinder.org).
     */
    host?: string;
    /**
     * Git ref of the link (default: the current commit).
     */
    ref?: string;
    /**
     * Link to the current branch instead of the commit.
     */
    branch?: boolean;
    /**
     * `false`: skip the environment probe (link and git warnings only).
     */
    snapshot?: boolean;
  }

  export interface IOperationFilter {
    kind?: string;
    state?: string;
    limit?: number;
  }

  export interface IStreamOptions {
    lastEventId?: string | null;
    signal?: AbortSignal;
  }
}

/**
 * Build `?a=1&b=2` with every value percent-encoded.
 */
function query(params: Record<string, string>): string {
  const parts = Object.keys(params).map(
    key => `${encodeURIComponent(key)}=${encodeURIComponent(params[key])}`
  );
  return parts.length ? `?${parts.join('&')}` : '';
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError';
}

/**
 * Read the JSON error body of a failed response (`{message, reason, hint}`) into an error.
 */
async function responseError(response: Response): Promise<EnvpackRequestError> {
  let body: Record<string, unknown> = {};
  try {
    const parsed = JSON.parse(await response.text());
    if (parsed && typeof parsed === 'object') {
      body = parsed as Record<string, unknown>;
    }
  } catch {
    // Not JSON (a proxy error page, say): fall back to the status text below.
  }
  const str = (v: unknown): string | null =>
    typeof v === 'string' && v ? v : null;
  const message =
    str(body.message) ??
    str(body.error) ??
    `${response.status} ${response.statusText || 'error'}`;
  return new EnvpackRequestError({
    status: response.status,
    reason: str(body.reason),
    hint: str(body.hint),
    message
  });
}

/**
 * Map one server-sent event to an operation event (`null` for comments and unknown shapes).
 */
export function toOperationEvent(
  sse: IServerSentEvent
): IOperationEvent | null {
  let data: unknown;
  try {
    data = JSON.parse(sse.data);
  } catch {
    return sse.data ? { type: 'log', message: sse.data, id: sse.id } : null;
  }
  if (!data || typeof data !== 'object') {
    return null;
  }
  const record = data as Record<string, unknown>;
  const type =
    sse.event !== 'message' ? sse.event : String(record.type ?? 'progress');
  return { ...record, type, id: sse.id } as IOperationEvent;
}
