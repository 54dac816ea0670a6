/**
 * The envpack model: the current notebook, its snapshot and Dockerfile, and the server's operations.
 *
 * Widgets never call the client themselves: they call the model and re-render on its signals, so the
 * sidebar, the toolbar button and commands share one state.
 */
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { EnvpackClient, EnvpackRequestError, errorMessage } from './api';
import { followOperation, StreamBudget } from './follow';
import {
  IOperation,
  IOperationEvent,
  IServerStatus,
  ISnapshot,
  TERMINAL_STATES
} from './tokens';

/**
 * Keep at most this many log lines per operation (the oldest are dropped).
 */
const MAX_LOG_LINES = 5000;
/**
 * Cut log lines longer than this (a 10 MB line must not freeze the page, RELIABILITY A7).
 */
const MAX_LINE_LENGTH = 64 * 1024;

/**
 * Whether an operation will never change again.
 */
export function isTerminal(op: Pick<IOperation, 'state'>): boolean {
  return TERMINAL_STATES.has(op.state);
}

export class EnvpackModel implements IDisposable {
  constructor(options: EnvpackModel.IOptions) {
    this.client = options.client;
    this._retryDelay = options.retryDelay ?? 1000;
    this._pollInterval = options.pollInterval ?? 2000;
    this._statusRetry = new Backoff(options.statusRetryDelay ?? 2000, 60_000);
    this._budget = new StreamBudget(options.maxStreams ?? 3);
  }

  readonly client: EnvpackClient;

  /**
   * Emitted when a part of the state changed (`path`, `snapshot`, `dockerfile`, `operations`,
   * `status` or `settings`).
   */
  get changed(): ISignal<this, EnvpackModel.ChangeKind> {
    return this._changed;
  }

  /**
   * Emitted when one operation changed (state, progress, result).
   */
  get operationChanged(): ISignal<this, IOperation> {
    return this._operationChanged;
  }

  /**
   * Emitted when log lines arrive for an operation.
   */
  get logAppended(): ISignal<this, EnvpackModel.ILogChunk> {
    return this._logAppended;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  get settings(): EnvpackModel.ISettings {
    return this._settings;
  }

  set settings(value: EnvpackModel.ISettings) {
    const changedImage = value.baseImage !== this._settings.baseImage;
    this._settings = { ...value };
    this._changed.emit('settings');
    if (changedImage && this._path) {
      void this.refreshDockerfile();
    }
  }

  /**
   * The path of the notebook the sidebar follows (relative to the server root), or `null`.
   */
  get path(): string | null {
    return this._path;
  }

  set path(value: string | null) {
    if (value === this._path) {
      return;
    }
    this._path = value;
    this.snapshot = null;
    this.snapshotError = null;
    this.dockerfile = null;
    this.dockerfileError = null;
    this._changed.emit('path');
    if (value) {
      void this.refresh();
      if (this._statusChecked && !this.statusOk) {
        // A notebook became current: check again now rather than at the next back-off step.
        void this.refreshStatus();
      }
    }
  }

  snapshot: ISnapshot | null = null;
  snapshotError: string | null = null;
  snapshotLoading = false;
  dockerfile: string | null = null;
  dockerfileError: string | null = null;
  status: IServerStatus | null = null;
  statusError: string | null = null;

  /**
   * Every known operation, newest first.
   */
  get operations(): ReadonlyArray<IOperation> {
    return this._order.map(id => this._operations.get(id)!);
  }

  getOperation(id: string): IOperation | undefined {
    return this._operations.get(id);
  }

  /**
   * The newest operation of a kind for a notebook (the current one by default).
   */
  latest(
    kind: string,
    path: string | null = this._path,
    match: (op: IOperation) => boolean = () => true
  ): IOperation | null {
    return (
      this.operations.find(
        op => op.kind === kind && op.path === path && match(op)
      ) ?? null
    );
  }

  /**
   * The log lines received so far for an operation.
   */
  log(id: string): ReadonlyArray<string> {
    return this._logs.get(id) ?? [];
  }

  /**
   * Reload the snapshot and the Dockerfile of the current notebook.
   */
  async refresh(): Promise<void> {
    await Promise.all([this.refreshSnapshot(), this.refreshDockerfile()]);
  }

  async refreshSnapshot(
    options: EnvpackClient.IReconstructOptions = {}
  ): Promise<void> {
    const path = this._path;
    if (!path) {
      return;
    }
    this.snapshotLoading = true;
    this._changed.emit('snapshot');
    await this._load(
      'snapshot',
      () => this.client.getSnapshot(path, options),
      (value, error) => {
        this.snapshot = value ?? this.snapshot;
        this.snapshotError = error;
        this.snapshotLoading = false;
      }
    );
  }

  async refreshDockerfile(): Promise<void> {
    const path = this._path;
    if (!path) {
      return;
    }
    const baseImage = this._settings.baseImage;
    await this._load(
      'dockerfile',
      () => this.client.getDockerfile(path, baseImage),
      (value, error) => {
        this.dockerfile = value ?? this.dockerfile;
        this.dockerfileError = error;
      }
    );
  }

  /**
   * Ask the server for its status. While the server or its engine cannot be reached, ask again
   * with a growing delay (2 s doubling to 60 s): one check failing while the engine was busy must
   * not leave the build buttons disabled until a reload.
   */
  async refreshStatus(): Promise<void> {
    this._statusRetry.cancel();
    try {
      this.status = await this.client.getStatus();
      this.statusError = null;
    } catch (err) {
      this.statusError =
        err instanceof EnvpackRequestError && err.status === 404
          ? 'The jupyter-envpack server extension is not running on this server ' +
            '(enable it: jupyter server extension enable jupyter_envpack, then restart).'
          : errorMessage(err);
    }
    this._statusChecked = true;
    if (this._isDisposed) {
      return;
    }
    this._changed.emit('status');
    if (this.statusOk) {
      this._statusRetry.reset();
    } else {
      this._statusRetry.schedule(() => void this.refreshStatus());
    }
  }

  /**
   * The last status check reached the server and its engine.
   */
  get statusOk(): boolean {
    return (
      this.statusError === null && this.status?.engine?.reachable !== false
    );
  }

  /**
   * `false` when the server says its Docker engine is unreachable (e.g. on Binder): builds and
   * reruns cannot work, while snapshot, Dockerfile and Binder still do. `true` while unknown.
   */
  get engineAvailable(): boolean {
    return this.status?.engine?.reachable !== false;
  }

  /**
   * No engine answers but the server can rerun in a fresh virtualenv (`run` with `engine: venv`).
   */
  get venvFallback(): boolean {
    return !this.engineAvailable && this.status?.venv_available === true;
  }

  /**
   * Reload the operation list from the server (the history survives page reloads there).
   */
  async refreshOperations(
    filter: EnvpackClient.IOperationFilter = {}
  ): Promise<void> {
    const ops = await this.client.listOperations(filter);
    for (const op of ops) {
      this._upsert(op, false);
    }
    this._sort();
    this._changed.emit('operations');
  }

  /**
   * Reconnect after a page load: list the operations (the server keeps them) and follow the
   * running ones again, resuming their event streams.
   */
  async reconnect(): Promise<void> {
    await this.refreshOperations();
    for (const op of this.operations) {
      if (!isTerminal(op)) {
        void this.follow(op.id);
      }
    }
  }

  /**
   * Start building the image of a notebook (the current one by default) and follow it.
   */
  async build(path: string | null = this._path): Promise<IOperation> {
    const options: Record<string, unknown> = {};
    if (this._settings.baseImage) {
      options.base_image = this._settings.baseImage;
    }
    return this._start('build', path, options);
  }

  /**
   * Rerun a notebook in a container and follow it. Without `image` the server builds the image
   * first (content-addressed, so an unchanged notebook reuses the cached image).
   */
  async run(
    path: string | null = this._path,
    options: EnvpackModel.IRunOptions = {}
  ): Promise<IOperation> {
    const body: Record<string, unknown> = {};
    if (options.parameters && Object.keys(options.parameters).length) {
      body.parameters = options.parameters;
    }
    if (options.image) {
      body.image = options.image;
    }
    if (options.engine) {
      body.engine = options.engine;
    }
    if (this._settings.baseImage) {
      body.base_image = this._settings.baseImage;
    }
    return this._start('run', path, body);
  }

  /**
   * Start a parameter sweep: one `run` operation with `sweep` (parameter → values in the CLI's
   * `--sweep` grammar, e.g. `{seed: '1..3'}`) and `max_parallel` (issue 14).
   */
  async sweep(
    sweep: Record<string, string>,
    options: {
      parameters?: Record<string, unknown>;
      maxParallel?: number;
    } = {},
    path: string | null = this._path
  ): Promise<IOperation> {
    const body: Record<string, unknown> = { sweep };
    if (options.parameters && Object.keys(options.parameters).length) {
      body.parameters = options.parameters;
    }
    if (options.maxParallel) {
      body.max_parallel = options.maxParallel;
    }
    if (this._settings.baseImage) {
      body.base_image = this._settings.baseImage;
    }
    return this._start('run', path, body);
  }

  /**
   * The "Containerise" button: one `run` operation (build, then rerun and compare) when
   * `rerunAfterBuild` is set, else a `build`. Being one server-side operation, it survives page
   * reloads and closed tabs. A second click while that operation is still going returns it
   * instead of starting the same work twice.
   */
  async containerise(
    path: string | null = this._path,
    options: EnvpackModel.IRunOptions = {}
  ): Promise<IOperation> {
    const kind = this._settings.rerunAfterBuild ? 'run' : 'build';
    const current = path ? this.latest(kind, path, op => !isSweep(op)) : null;
    if (current && !isTerminal(current)) {
      return current;
    }
    return kind === 'run' ? this.run(path, options) : this.build(path);
  }

  /**
   * Submit the notebook as a cluster `job` operation (options as `validate_job` takes them) and
   * follow it.
   */
  async submitJob(
    path: string | null = this._path,
    options: Record<string, unknown> = {}
  ): Promise<IOperation> {
    const body: Record<string, unknown> = { ...options };
    if (
      this._settings.baseImage &&
      body.base_image === undefined &&
      !body.image
    ) {
      body.base_image = this._settings.baseImage;
    }
    return this._start('job', path, body);
  }

  /**
   * Ask the server to cancel an operation.
   */
  async cancel(id: string): Promise<void> {
    const op = await this.client.cancelOperation(id);
    if (op) {
      this._upsert(op);
    }
  }

  /**
   * Resolve with the operation once it reaches a terminal state.
   */
  waitFor(id: string): Promise<IOperation> {
    const current = this._operations.get(id);
    if (current && isTerminal(current)) {
      return Promise.resolve(current);
    }
    return new Promise(resolve => {
      const onChange = (_: this, op: IOperation): void => {
        if (op.id === id && isTerminal(op)) {
          this._operationChanged.disconnect(onChange, this);
          resolve(op);
        }
      };
      this._operationChanged.connect(onChange, this);
    });
  }

  /**
   * Follow an operation's event stream until it ends, reconnecting (and resuming from the last
   * event id) when the stream drops, and polling when streaming is not possible.
   */
  async follow(id: string): Promise<void> {
    if (this._followers.has(id) || this._isDisposed) {
      return;
    }
    const controller = new AbortController();
    this._followers.set(id, controller);
    try {
      await followOperation({
        client: this.client,
        id,
        signal: controller.signal,
        budget: this._budget,
        onEvent: event => this._onEvent(id, event),
        settled: () => this._settled(id),
        retryDelay: this._retryDelay,
        pollInterval: this._pollInterval
      });
    } finally {
      this._followers.delete(id);
    }
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._statusRetry.cancel();
    for (const controller of this._followers.values()) {
      controller.abort();
    }
    this._followers.clear();
    Signal.clearData(this);
  }

  /**
   * Fetch something for the current notebook and apply it, unless a newer request of the same kind
   * was made meanwhile (switching notebooks quickly must not show a stale answer).
   */
  private async _load<T>(
    kind: 'snapshot' | 'dockerfile',
    request: () => Promise<T>,
    apply: (value: T | null, error: string | null) => void
  ): Promise<void> {
    const ticket = (this._tickets[kind] += 1);
    let value: T | null = null;
    let error: string | null = null;
    try {
      value = await request();
    } catch (err) {
      error = errorMessage(err);
    }
    if (ticket === this._tickets[kind]) {
      apply(value, error);
      this._changed.emit(kind);
    }
  }

  /**
   * Check an operation on the server; `true` when it is finished (or gone).
   */
  private async _settled(id: string): Promise<boolean> {
    try {
      const op = await this.client.getOperation(id);
      this._upsert(op);
      return isTerminal(op);
    } catch (err) {
      if (err instanceof EnvpackRequestError && err.status === 404) {
        const op = this._operations.get(id);
        if (op) {
          this._upsert({ ...op, state: 'lost' });
        }
        return true;
      }
      return false;
    }
  }

  private async _start(
    kind: string,
    path: string | null,
    options: Record<string, unknown>
  ): Promise<IOperation> {
    if (!path) {
      throw new Error('Open a notebook first.');
    }
    const op = await this.client.startOperation({ kind, path, options });
    this._upsert(op);
    if (!isTerminal(op)) {
      void this.follow(op.id);
    }
    return op;
  }

  private _onEvent(id: string, event: IOperationEvent): void {
    if (event.operation) {
      this._upsert(event.operation);
    }
    const op = this._operations.get(id);
    // A terminal state is taken from `GET operations/<id>` once the stream ends, so that the
    // operation becomes final together with its result.
    const state =
      event.state && !TERMINAL_STATES.has(event.state) ? event.state : null;
    if (op && (state || event.type === 'progress')) {
      const update: IOperation = { ...op };
      if (state) {
        update.state = state;
      }
      if (typeof event.progress === 'number') {
        update.progress = event.progress;
      }
      if (event.stage) {
        update.stage = event.stage;
      }
      if (event.message && event.kind !== 'log') {
        update.message = event.message;
      }
      this._upsert(update);
    }
    if (
      typeof event.message === 'string' &&
      event.message &&
      event.kind !== 'progress'
    ) {
      const prefix =
        event.kind === 'step'
          ? '==> '
          : event.kind === 'warning'
            ? 'warning: '
            : '';
      this._appendLog(id, [prefix + event.message]);
    }
  }

  private _appendLog(id: string, lines: string[]): void {
    const log = this._logs.get(id) ?? [];
    const clean = lines
      .flatMap(line => line.split(/\r?\n/))
      .map(line =>
        line.length > MAX_LINE_LENGTH
          ? line.slice(0, MAX_LINE_LENGTH) + '…'
          : line
      );
    log.push(...clean);
    if (log.length > MAX_LOG_LINES) {
      log.splice(0, log.length - MAX_LOG_LINES);
    }
    this._logs.set(id, log);
    this._logAppended.emit({ id, lines: clean });
  }

  private _upsert(op: IOperation, emit = true): void {
    const previous = this._operations.get(op.id);
    // A finished operation never goes back to running (a late event must not resurrect it).
    if (previous && isTerminal(previous) && !isTerminal(op)) {
      return;
    }
    const merged = { ...previous, ...op };
    this._operations.set(op.id, merged);
    if (!previous) {
      this._order.unshift(op.id);
    }
    if (emit) {
      this._operationChanged.emit(merged);
      if (!previous || previous.state !== merged.state) {
        this._changed.emit('operations');
      }
      if (previous && !isTerminal(previous) && isTerminal(merged)) {
        // The engine may have gone down (or come back): keep the header's warning true.
        void this.refreshStatus();
      }
    }
  }

  private _sort(): void {
    const time = (op: IOperation): number => {
      const value = op.created;
      if (typeof value === 'number') {
        return value < 1e12 ? value * 1000 : value;
      }
      return value ? Date.parse(value) || 0 : 0;
    };
    this._order.sort(
      (a, b) => time(this._operations.get(b)!) - time(this._operations.get(a)!)
    );
  }

  private _changed = new Signal<this, EnvpackModel.ChangeKind>(this);
  private _operationChanged = new Signal<this, IOperation>(this);
  private _logAppended = new Signal<this, EnvpackModel.ILogChunk>(this);
  private _isDisposed = false;
  private _path: string | null = null;
  private _settings: EnvpackModel.ISettings = {
    baseImage: '',
    rerunAfterBuild: true
  };
  private _operations = new Map<string, IOperation>();
  private _order: string[] = [];
  private _logs = new Map<string, string[]>();
  private _followers = new Map<string, AbortController>();
  private _retryDelay: number;
  private _pollInterval: number;
  private _budget: StreamBudget;
  private _tickets = { snapshot: 0, dockerfile: 0 };
  private _statusRetry: Backoff;
  private _statusChecked = false;
}

/**
 * One pending retry whose delay doubles up to a cap (`reset` after a success).
 */
class Backoff {
  constructor(
    private readonly _first: number,
    private readonly _max: number
  ) {
    this._delay = _first;
  }

  schedule(action: () => void): void {
    this.cancel();
    this._timer = setTimeout(action, this._delay);
    this._delay = Math.min(this._delay * 2, this._max);
  }

  cancel(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  reset(): void {
    this.cancel();
    this._delay = this._first;
  }

  private _delay: number;
  private _timer: ReturnType<typeof setTimeout> | null = null;
}

export namespace EnvpackModel {
  export type ChangeKind =
    'path' | 'snapshot' | 'dockerfile' | 'operations' | 'status' | 'settings';

  export interface IOptions {
    client: EnvpackClient;
    /**
     * First delay before reconnecting a dropped event stream, in ms (doubles up to 10 s).
     */
    retryDelay?: number;
    /**
     * Event streams kept open at once (default 3); more operations are polled.
     */
    maxStreams?: number;
    /**
     * Delay between polls of an operation that is not streamed, in ms (default 2 s).
     */
    pollInterval?: number;
    /**
     * First delay before checking the server status again after a failed check, in ms (doubles
     * up to 60 s).
     */
    statusRetryDelay?: number;
  }

  /**
   * The user settings (schema/plugin.json).
   */
  export interface ISettings {
    /**
     * Base image of the Dockerfile; empty means the server's `c.EnvPack.base_image`.
     */
    baseImage: string;
    /**
     * Whether "Containerise" reruns the notebook after building.
     */
    rerunAfterBuild: boolean;
  }

  export interface IRunOptions {
    parameters?: Record<string, unknown>;
    image?: string;
    /**
     * `venv`: rerun in a fresh virtualenv on the server, without Docker (issue 13.1).
     */
    engine?: 'docker' | 'venv';
  }

  export interface ILogChunk {
    id: string;
    lines: string[];
  }
}

/**
 * Whether a `run` operation is a parameter sweep (it has `options.sweep`).
 */
export function isSweep(op: IOperation): boolean {
  return Boolean(op.options?.sweep);
}
