/**
 * The wire types of the envpack REST API (mirroring docs/api.md) and the sidebar token.
 */
import { Token } from '@lumino/coreutils';
import { Widget } from '@lumino/widgets';

import type { EnvpackClient } from './api';
import type { EnvpackModel } from './model';

/**
 * Command ids, named `envpack:verb-noun`.
 */
export namespace CommandIDs {
  export const containerise = 'envpack:containerise-notebook';
  export const openSidebar = 'envpack:open-sidebar';
  export const build = 'envpack:build-image';
  export const run = 'envpack:run-notebook';
  export const refresh = 'envpack:refresh-snapshot';
}

/**
 * One pinned distribution of the snapshot.
 */
export interface IPackage {
  name: string;
  version: string;
  /**
   * Whether the notebook imports it (`false`: pulled in as a dependency).
   */
  requested: boolean;
  modules?: string[];
}

/**
 * Something the user should know about the snapshot, with the fix when there is one.
 */
export interface IWarning {
  code: string;
  message: string;
  cell?: number | null;
  hint?: string | null;
}

/**
 * The environment snapshot of a notebook (schema `envpack.snapshot/1`).
 */
export interface ISnapshot {
  schema: string;
  notebook?: string;
  python: { version: string; interpreter?: string };
  kernel?: string | null;
  packages: IPackage[];
  local_files: string[];
  warnings: IWarning[];
  hash: string;
  /**
   * `reconstructed`: an educated reconstruction of a missing environment, not what ran (13.2).
   */
  origin?: string;
  reconstruction?: IReconstruction | null;
}

/**
 * How a reconstructed snapshot was made: the release cut-off and the candidates with evidence.
 */
export interface IReconstruction {
  as_of?: string;
  as_of_used?: string;
  python?: string;
  unresolved?: string[];
  candidates?: Array<Record<string, unknown>>;
}

export type OperationKind = 'build' | 'run' | string;

export type OperationState =
  'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'lost';

/**
 * States after which an operation never changes again.
 */
export const TERMINAL_STATES: ReadonlySet<string> = new Set([
  'succeeded',
  'failed',
  'cancelled',
  'lost'
]);

/**
 * The result of a build operation.
 */
export interface IBuildResult {
  image: string;
  cached: boolean;
  duration?: number;
}

/**
 * One cell of a rerun report.
 */
export interface ICellResult {
  index: number;
  status: string;
  diff?: string | null;
  ename?: string | null;
  evalue?: string | null;
  /**
   * A differing cell's source (shown beside its diff).
   */
  source?: string | null;
  /**
   * Why the cell probably differs, when envpack can tell (`unseeded-random`, `time-or-date`...).
   */
  reason?: { code: string; text: string } | null;
}

/**
 * The report of a rerun (schema `envpack.report/1`).
 */
export interface IReport {
  schema: string;
  reproduced: boolean;
  /**
   * `reproduced`, `not-reproduced` or `nothing-to-compare` (absent from older servers).
   */
  verdict?: ReportVerdict;
  cells: ICellResult[];
  summary: string | Record<string, number>;
  /**
   * The parameters injected into the rerun.
   */
  parameters?: Record<string, unknown>;
  warnings?: IReportWarning[];
  /**
   * `reconstructed` when the rerun used a reconstructed environment (issue 13.2).
   */
  origin?: string;
  reconstruction?: IReconstruction | null;
}

export type ReportVerdict =
  'reproduced' | 'not-reproduced' | 'nothing-to-compare';

/**
 * A warning of the report, e.g. `parameters-overridden`: a cell re-assigns a parameter after the
 * injected cell (`cell` is its 0-based position among all cells).
 */
export interface IReportWarning {
  code: string;
  message: string;
  hint?: string | null;
  cell?: number | null;
  names?: string[];
}

/**
 * The result of a run operation.
 */
export interface IRunResult {
  output_path: string | null;
  report: IReport | null;
  image?: string;
  /**
   * The build made before the run (when no image was given).
   */
  build?: IBuildResult | null;
  /**
   * A sweep's members (a `run` with `options.sweep`, issue 14) instead of one report.
   */
  sweep?: ISweepResult | null;
}

/**
 * The result of a sweep: where its notebooks are, and one row per member.
 */
export interface ISweepResult {
  folder: string;
  summary_csv?: string | null;
  runs: ISweepRun[];
}

/**
 * One member of a sweep.
 */
export interface ISweepRun {
  index: number;
  parameters: Record<string, unknown>;
  state: string;
  verdict?: string | null;
  duration?: number | null;
  output_path?: string | null;
  values?: Record<string, unknown>;
  message?: string;
}

/**
 * An error as the API sends it (`EnvpackError.to_json()`).
 */
export interface IErrorInfo {
  message: string;
  reason?: string | null;
  hint?: string | null;
  error?: string;
}

/**
 * A long piece of work on the server: a build, a run, a cluster job.
 */
export interface IOperation {
  id: string;
  kind: OperationKind;
  state: OperationState;
  path: string;
  progress?: number | null;
  stage?: string | null;
  message?: string | null;
  options?: Record<string, unknown>;
  result?: IBuildResult | IRunResult | Record<string, unknown> | null;
  error?: IErrorInfo | string | null;
  created?: string | number | null;
  updated?: string | number | null;
  finished?: string | number | null;
}

/**
 * The body of `POST operations`.
 */
export interface IOperationRequest {
  kind: OperationKind;
  path: string;
  options?: Record<string, unknown>;
}

/**
 * One event of an operation's stream: a progress event of the core, or a state change.
 */
export interface IOperationEvent {
  /**
   * `step`, `log`, `progress`, `info`, `warning` (core events) or `state` (operation changed).
   */
  type: string;
  id: string | null;
  stage?: string;
  message?: string;
  kind?: string;
  progress?: number | null;
  state?: OperationState;
  error?: IErrorInfo | null;
  operation?: IOperation;
  [key: string]: unknown;
}

/**
 * `GET status`: what the server side can do right now.
 */
export interface IServerStatus {
  version?: string;
  /**
   * A message when the operations database is unusable.
   */
  degraded?: string | null;
  kinds?: string[];
  engine?: {
    reachable: boolean;
    version?: string;
    error?: IErrorInfo | string | null;
    [key: string]: unknown;
  };
  /**
   * Cluster backends jobs can use from this server (`{}` without the `job` kind).
   */
  backends?: Record<string, IBackendInfo>;
  default_backend?: string | null;
  [key: string]: unknown;
}

/**
 * Whether a cluster backend can take jobs from this server, and if not why.
 */
export interface IBackendInfo {
  available: boolean;
  reason?: string | null;
  hint?: string | null;
}

/**
 * `GET binder`: how to share a notebook through Binder.
 */
export interface IBinderInfo {
  /**
   * The Binder link, or `null` when there is none (the warnings say why).
   */
  link: string | null;
  badges: { markdown: string; rst: string } | null;
  warnings: IWarning[];
  /**
   * The notebook's path in its git repository.
   */
  notebook: string;
  path?: string;
  ref: string | null;
  remote: { provider: string; url: string } | null;
  host: string;
  /**
   * The files of the `binder/` folder (`null` when the environment was not probed).
   */
  files: Record<string, string> | null;
}

/**
 * `POST binder`: what was written (API paths).
 */
export interface IBinderWriteResult {
  folder: string;
  written: string[];
  removed: string[];
  files: Record<string, string>;
}

/**
 * The result of a cluster `job` operation.
 */
export interface IJobResult {
  job_id: string;
  backend: string;
  state?: string;
  message?: string | null;
  image?: string;
  /**
   * API path of the executed notebook fetched back, when there is one.
   */
  output_path: string | null;
  [key: string]: unknown;
}

/**
 * Options of a section of the envpack sidebar.
 */
export interface ISectionOptions {
  /**
   * Sections are sorted by rank (Environment 10, Dockerfile 20, Build 30, Run 40, History 50).
   */
  rank?: number;
}

/**
 * The envpack sidebar, provided to other plugins so they can add their own sections.
 */
export interface IEnvpackSidebar {
  /**
   * The shared model (current notebook, snapshot, operations).
   */
  readonly model: EnvpackModel;
  /**
   * The REST client.
   */
  readonly client: EnvpackClient;
  /**
   * Add a section widget (usually an `EnvpackSection`) to the sidebar.
   */
  addSection(section: Widget, options?: ISectionOptions): void;
  /**
   * Show the sidebar and unfold a section, giving it half the height.
   */
  reveal(section?: Widget): void;
}

/**
 * The token of the envpack sidebar.
 */
export const IEnvpackSidebar = new Token<IEnvpackSidebar>(
  'jupyter-envpack:IEnvpackSidebar',
  'The envpack sidebar: add sections (Share, Cluster, ...) to it.'
);
