/**
 * The envpack model: the current notebook, its snapshot and Dockerfile, and the server's operations.
 *
 * Widgets never call the client themselves: they call the model and re-render on its signals, so the
 * sidebar, the toolbar button and commands share one state.
 */
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { EnvpackClient, EnvpackRequestError, errorMessage } from './api';
import {
  IBuildResult,
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
    this._pending = options.pendingStore ?? new MemoryPendingStore();
    this._retryDelay = options.retryDelay ?? 1000;
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
  latest(kind: string, path: string | null = this._path): IOperation | null {
    return this.operations.find(op => op.kind === kind && op.path === path) ?? null;
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

  async refreshSnapshot(): Promise<void> {
    const path = this._path;
    if (!path) {
      return;
    }
    const ticket = ++this._snapshotTicket;
    this.snapshotLoading = true;
    this._changed.emit('snapshot');
    try {
      const snapshot = await this.client.getSnapshot(path);
      if (ticket === this._snapshotTicket) {
        this.snapshot = snapshot;
        this.snapshotError = null;
      }
    } catch (err) {
      if (ticket === this._snapshotTicket) {
        this.snapshotError = errorMessage(err);
      }
    } finally {
      if (ticket === this._snapshotTicket) {
        this.snapshotLoading = false;
        this._changed.emit('snapshot');
      }
    }
  }

  async refreshDockerfile(): Promise<void> {
    const path = this._path;
    if (!path) {
      return;
    }
    const ticket = ++this._dockerfileTicket;
    try {
      const text = await this.client.getDockerfile(path, this._settings.baseImage);
      if (ticket === this._dockerfileTicket) {
        this.dockerfile = text;
        this.dockerfileError = null;
      }
    } catch (err) {
      if (ticket === this._dockerfileTicket) {
        this.dockerfileError = errorMessage(err);
      }
    }
    if (ticket === this._dockerfileTicket) {
      this._changed.emit('dockerfile');
    }
  }

  async refreshStatus(): Promise<void> {
    try {
      this.status = await this.client.getStatus();
      this.statusError = null;
    } catch (err) {
      this.statusError = errorMessage(err);
    }
    this._changed.emit('status');
  }

  /**
   * Reload the operation list from the server (the history survives page reloads there).
   */
  async refreshOperations(): Promise<void> {
    const ops = await this.client.listOperations();
    for (const op of ops) {
      this._upsert(op, false);
    }
    this._sort();
    this._changed.emit('operations');
  }

  /**
   * Reconnect after a page load: list the operations, follow the running ones and finish the
   * "containerise" chains (build, then run) started before the reload.
   */
  async reconnect(): Promise<void> {
    await this.refreshOperations();
    for (const op of this.operations) {
      if (!isTerminal(op)) {
        void this.follow(op.id);
      }
    }
    for (const [buildId, chain] of Object.entries(this._pending.load())) {
      const op = this._operations.get(buildId);
      if (!op) {
        this._pending.remove(buildId);
      } else if (isTerminal(op)) {
        void this._continueChain(op, chain);
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
   * Rerun a notebook in its image with optional parameters and follow it.
   */
  async run(
    path: string | null = this._path,
    options: EnvpackModel.IRunOptions = {}
  ): Promise<IOperation> {
    const body: Record<string, unknown> = {};
    if (options.parameters && Object.keys(options.parameters).length) {
      body.parameters = options.parameters;
    }
    const image = options.image ?? this._builtImage(path);
    if (image) {
      body.image = image;
    }
    if (this._settings.baseImage) {
      body.base_image = this._settings.baseImage;
    }
    return this._start('run', path, body);
  }

  /**
   * Build, then (when `rerunAfterBuild` is set) rerun: the "Containerise" button.
   *
   * Returns the build operation. The chain is remembered in the pending store so that a page
   * reload in the middle of the build still starts the run.
   */
  async containerise(
    path: string | null = this._path,
    options: EnvpackModel.IRunOptions = {}
  ): Promise<IOperation> {
    const op = await this.build(path);
    if (this._settings.rerunAfterBuild) {
      const chain = { path: op.path, parameters: options.parameters ?? {} };
      this._pending.save(op.id, chain);
      if (isTerminal(op)) {
        void this._continueChain(op, chain);
      }
    }
    return op;
  }

  /**
   * Ask the server to cancel an operation.
   */
  async cancel(id: string): Promise<void> {
    this._pending.remove(id);
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
    let lastEventId: string | null = null;
    let failures = 0;
    try {
      while (!controller.signal.aborted) {
        try {
          lastEventId = await this.client.streamEvents(
            id,
            event => this._onEvent(id, event),
            { lastEventId, signal: controller.signal }
          );
        } catch (err) {
          if (controller.signal.aborted) {
            break;
          }
          failures++;
        }
        if (await this._settled(id)) {
          break;
        }
        await sleep(Math.min(this._retryDelay * 2 ** Math.min(failures, 4), 10000));
      }
    } finally {
      this._followers.delete(id);
    }
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    for (const controller of this._followers.values()) {
      controller.abort();
    }
    this._followers.clear();
    Signal.clearData(this);
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

  private _builtImage(path: string | null): string | null {
    const build = this.operations.find(
      op => op.kind === 'build' && op.path === path && op.state === 'succeeded'
    );
    const result = build?.result as IBuildResult | null | undefined;
    return result?.image ?? null;
  }

  private async _continueChain(
    build: IOperation,
    chain: EnvpackModel.IPendingChain
  ): Promise<void> {
    this._pending.remove(build.id);
    const result = build.result as IBuildResult | null | undefined;
    if (build.state !== 'succeeded' || !result?.image) {
      return;
    }
    try {
      await this.run(chain.path, { image: result.image, parameters: chain.parameters });
    } catch (err) {
      this._appendLog(build.id, [`Could not start the rerun: ${errorMessage(err)}`]);
    }
  }

  private _onEvent(id: string, event: IOperationEvent): void {
    const op = this._operations.get(id);
    if (event.operation) {
      this._upsert(event.operation);
    } else if (op && (event.state || typeof event.progress === 'number')) {
      const update: IOperation = { ...op };
      if (event.state) {
        update.state = event.state;
      }
      if (typeof event.progress === 'number') {
        update.progress = event.progress;
      }
      this._upsert(update);
    }
    if (typeof event.message === 'string' && event.message) {
      const isStep = event.type === 'step' || event.kind === 'step';
      const isProgress = event.type === 'progress' || event.kind === 'progress';
      if (!isProgress || isStep) {
        this._appendLog(id, [isStep ? `==> ${event.message}` : event.message]);
      }
      if (isStep && op) {
        this._upsert({ ...this._operations.get(id)!, stage: event.stage ?? op.stage });
      }
    }
  }

  private _appendLog(id: string, lines: string[]): void {
    const log = this._logs.get(id) ?? [];
    const clean = lines
      .flatMap(line => line.split(/\r?\n/))
      .map(line => (line.length > MAX_LINE_LENGTH ? line.slice(0, MAX_LINE_LENGTH) + '…' : line));
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
    }
    const chain = this._pending.load()[op.id];
    if (emit && chain && isTerminal(merged) && previous && !isTerminal(previous)) {
      void this._continueChain(merged, chain);
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
  private _settings: EnvpackModel.ISettings = { baseImage: '', rerunAfterBuild: true };
  private _operations = new Map<string, IOperation>();
  private _order: string[] = [];
  private _logs = new Map<string, string[]>();
  private _followers = new Map<string, AbortController>();
  private _pending: EnvpackModel.IPendingStore;
  private _retryDelay: number;
  private _snapshotTicket = 0;
  private _dockerfileTicket = 0;
}

export namespace EnvpackModel {
  export type ChangeKind =
    | 'path'
    | 'snapshot'
    | 'dockerfile'
    | 'operations'
    | 'status'
    | 'settings';

  export interface IOptions {
    client: EnvpackClient;
    /**
     * Where "build then run" chains survive a page reload (default: memory only).
     */
    pendingStore?: IPendingStore;
    /**
     * First delay before reconnecting a dropped event stream, in ms (doubles up to 10 s).
     */
    retryDelay?: number;
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
  }

  export interface ILogChunk {
    id: string;
    lines: string[];
  }

  /**
   * A run to start when the build with this id succeeds.
   */
  export interface IPendingChain {
    path: string;
    parameters: Record<string, unknown>;
  }

  export interface IPendingStore {
    load(): Record<string, IPendingChain>;
    save(buildId: string, chain: IPendingChain): void;
    remove(buildId: string): void;
  }
}

/**
 * Pending chains kept in memory (tests, and browsers without storage).
 */
export class MemoryPendingStore implements EnvpackModel.IPendingStore {
  load(): Record<string, EnvpackModel.IPendingChain> {
    return { ...this._chains };
  }

  save(buildId: string, chain: EnvpackModel.IPendingChain): void {
    this._chains[buildId] = chain;
  }

  remove(buildId: string): void {
    delete this._chains[buildId];
  }

  protected _chains: Record<string, EnvpackModel.IPendingChain> = {};
}

/**
 * Pending chains kept in the browser's `localStorage`, so they survive a page reload.
 */
export class LocalPendingStore extends MemoryPendingStore {
  constructor(private readonly _key: string, private readonly _storage: Storage) {
    super();
    try {
      this._chains = JSON.parse(this._storage.getItem(this._key) ?? '{}') ?? {};
    } catch {
      this._chains = {};
    }
  }

  load(): Record<string, EnvpackModel.IPendingChain> {
    try {
      this._chains = JSON.parse(this._storage.getItem(this._key) ?? '{}') ?? {};
    } catch {
      // Keep the in-memory copy when the stored value is unreadable.
    }
    return super.load();
  }

  save(buildId: string, chain: EnvpackModel.IPendingChain): void {
    super.save(buildId, chain);
    this._store();
  }

  remove(buildId: string): void {
    this.load();
    super.remove(buildId);
    this._store();
  }

  private _store(): void {
    try {
      this._storage.setItem(this._key, JSON.stringify(this._chains));
    } catch {
      // Storage full or disabled: the chain still works until the page reloads.
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms));
}
