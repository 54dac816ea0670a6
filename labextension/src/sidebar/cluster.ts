/**
 * Cluster: submit the notebook as a cluster job (a `job` operation: build, push to a registry, run
 * on Docker Swarm or Kubernetes, fetch the executed notebook back), then follow it (state, log,
 * cancel) and list the jobs the server knows, with a link that opens each fetched notebook.
 *
 * The backends come from `GET status` (`backends`, `default_backend`): unavailable ones are shown
 * with their reason and cannot be chosen.
 */
import { errorMessage } from '../api';
import { EnvpackModel } from '../model';
import { IBackendInfo, IJobResult, IOperation, IServerStatus } from '../tokens';
import { button, clear, errorBox, formatTime, h } from './dom';
import { OperationView } from './operation';
import { OperationSection } from './opsection';
import { openOutputLink, parseParameters } from './run';

export class ClusterSection extends OperationSection {
  constructor(options: ClusterSection.IOptions) {
    super({
      label: 'Cluster',
      rank: 45,
      kind: 'job',
      buttonLabel: 'Submit job',
      buttonTitle:
        'Build the image, push it to the registry and run the notebook on the chosen cluster',
      buttonClass: 'jp-Envpack-submitJob',
      ...options
    });
    this._open = options.openPath;
    this._backend = h('select', {
      className: 'jp-Envpack-backend',
      attrs: { id: uid('backend') }
    });
    this._registry = input(
      'registry',
      'default: the server’s registry (e.g. 127.0.0.1:5000)'
    );
    this._schedule = input('schedule', 'optional cron, e.g. 0 6 * * *');
    this._params = h('textarea', {
      className: 'jp-Envpack-parameters',
      title:
        'One parameter per line: name = value (JSON, else a string), like papermill -p',
      attrs: {
        rows: '2',
        placeholder: 'parameters, e.g. n = 3',
        spellcheck: 'false'
      }
    });
    this._backendNotes = h('div', { className: 'jp-Envpack-backendNotes' });
    const form = h('div', { className: 'jp-Envpack-form' }, [
      label('Backend', this._backend),
      this._backend,
      label('Registry', this._registry),
      this._registry,
      label('Schedule', this._schedule),
      this._schedule
    ]);
    this.body.insertBefore(this._params, this.body.firstChild);
    this.body.insertBefore(this._backendNotes, this._params);
    this.body.insertBefore(form, this._backendNotes);

    this._onlyCurrent = h('input', {
      attrs: { type: 'checkbox', 'aria-label': 'Jobs of this notebook only' }
    });
    this._onlyCurrent.checked = true;
    this._onlyCurrent.addEventListener('change', () => this._renderJobs());
    this._listError = '';
    this._jobs = h('div', { className: 'jp-Envpack-jobList' });
    this.body.appendChild(
      h('div', { className: 'jp-Envpack-row' }, [
        h('span', { className: 'jp-Envpack-subtitle', text: 'Jobs' }),
        h(
          'label',
          {
            className: 'jp-Envpack-filter',
            title: 'Only the current notebook'
          },
          [this._onlyCurrent, document.createTextNode('this notebook')]
        ),
        button('Refresh', () => void this.refreshJobs(), {
          className: 'jp-Envpack-refreshJobs',
          ariaLabel: 'Refresh cluster jobs',
          title: 'Reload the cluster jobs from the server'
        })
      ])
    );
    this.body.appendChild(this._jobs);
  }

  /**
   * Reload the job operations from the server (`GET operations?kind=job`).
   */
  async refreshJobs(): Promise<void> {
    try {
      await this.model.refreshOperations({ kind: 'job' });
      this._listError = '';
    } catch (err) {
      this._listError = errorMessage(err);
    }
    this._renderJobs();
  }

  /**
   * The options of the job to submit, from the form (throws on bad parameters).
   */
  jobOptions(): Record<string, unknown> {
    const options: Record<string, unknown> = {};
    if (this._backend.value) {
      options.backend = this._backend.value;
    }
    const registry = this._registry.value.trim();
    if (registry) {
      options.registry = registry;
    }
    const schedule = this._schedule.value.trim();
    if (schedule) {
      options.schedule = schedule;
    }
    const parameters = parseParameters(this._params.value);
    if (Object.keys(parameters).length) {
      options.parameters = parameters;
    }
    return options;
  }

  render(): void {
    super.render();
    const usable = this._renderBackends();
    if (!usable) {
      this.startButton.disabled = true;
    }
    this._renderJobs();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._disposeViews();
    super.dispose();
  }

  protected start(): Promise<unknown> {
    return this.model.submitJob(this.model.path, this.jobOptions());
  }

  protected renderResult(op: IOperation | null): void {
    if (op) {
      this.result.append(...renderJobResult(op, this._open));
    }
  }

  /**
   * Fill the backend choice from the status; `false` when no backend can take a job.
   */
  private _renderBackends(): boolean {
    const status = this.model.status;
    if (status === this._shownStatus && status) {
      return this._usable; // unchanged: keep the open drop-down and the choice as they are
    }
    this._shownStatus = status;
    this._usable = this._fillBackends(status);
    return this._usable;
  }

  private _fillBackends(status: IServerStatus | null): boolean {
    const backends: Record<string, IBackendInfo> = status?.backends ?? {};
    const names = Object.keys(backends);
    const previous = this._backend.value;
    clear(this._backend);
    clear(this._backendNotes);
    if (!status) {
      this._backendNotes.appendChild(
        h('p', {
          className: 'jp-Envpack-loading',
          text: 'Asking the server for its backends…'
        })
      );
      return false;
    }
    if (!names.length) {
      this._backendNotes.appendChild(
        h('p', {
          className: 'jp-Envpack-empty',
          text: 'Cluster jobs are not enabled on this server (no "job" operation kind).'
        })
      );
      return false;
    }
    // With a usable backend, why the others are unusable is folded away (it is not a warning
    // about the backend in use, issue 12.6).
    const usable = names.some(name => backends[name].available);
    const unusable =
      names.length - names.filter(n => backends[n].available).length;
    const notes = usable
      ? h('details', { className: 'jp-Envpack-otherBackends' }, [
          h('summary', { text: `Unavailable backends (${unusable})` })
        ])
      : this._backendNotes;
    if (usable && unusable) {
      this._backendNotes.appendChild(notes);
    }
    for (const name of names) {
      const info = backends[name];
      const option = h('option', {
        text: info.available ? name : `${name} (unavailable)`,
        title: info.available
          ? ''
          : [info.reason, info.hint].filter(Boolean).join(' — '),
        attrs: { value: name }
      });
      option.disabled = !info.available;
      this._backend.appendChild(option);
      if (!info.available) {
        notes.appendChild(
          h(
            'div',
            { className: 'jp-Envpack-note', attrs: { 'data-backend': name } },
            [
              h('div', {
                text: `${name} unavailable: ${info.reason || 'unknown reason'}`
              }),
              info.hint
                ? h('div', {
                    className: 'jp-Envpack-hint',
                    text: `Fix: ${info.hint}`
                  })
                : null
            ]
          )
        );
      }
    }
    const available = names.filter(name => backends[name].available);
    const preferred = [
      previous,
      status.default_backend ?? '',
      ...available
    ].find(name => !!name && backends[name]?.available);
    this._backend.value = preferred ?? names[0];
    if (!available.length) {
      this._backendNotes.appendChild(
        errorBox('No cluster backend is usable from this server.')
      );
    }
    return available.length > 0;
  }

  private _renderJobs(): void {
    const jobs = this.model.operations.filter(
      op =>
        op.kind === 'job' &&
        (!this._onlyCurrent.checked || op.path === this.model.path)
    );
    // Progress events re-render the section: rebuild the list only when it really changed (the
    // open views follow their operation by themselves).
    const signature = JSON.stringify([
      this._listError,
      jobs.map(op => [op.id, op.state])
    ]);
    if (signature === this._signature) {
      return;
    }
    this._signature = signature;
    this._disposeViews();
    clear(this._jobs);
    if (this._listError) {
      this._jobs.appendChild(errorBox(this._listError));
    }
    if (!jobs.length) {
      this._jobs.appendChild(
        h('p', { className: 'jp-Envpack-empty', text: 'No jobs yet.' })
      );
      return;
    }
    this._jobs.appendChild(
      h(
        'ul',
        { className: 'jp-Envpack-jobs' },
        jobs.map(op => this._item(op))
      )
    );
  }

  private _item(op: IOperation): HTMLElement {
    const result = op.result as IJobResult | null | undefined;
    const backend =
      result?.backend ?? (op.options?.backend as string | undefined) ?? '';
    const details = h(
      'details',
      { className: 'jp-Envpack-historyItem jp-Envpack-job' },
      [
        h('summary', {}, [
          h('span', {
            className: `jp-Envpack-state jp-Envpack-state-${op.state}`,
            text: op.state
          }),
          h('span', {
            className: 'jp-Envpack-kind',
            text: backend ? ` ${backend} ` : ' '
          }),
          h('span', { className: 'jp-Envpack-path', text: op.path }),
          h('span', {
            className: 'jp-Envpack-time',
            text: ` ${formatTime(op.created)}`
          })
        ])
      ]
    );
    details.dataset.operation = op.id;
    details.open = this._expanded.has(op.id);
    const expand = (): void => {
      if (this.isDisposed || this._views.has(op.id)) {
        return;
      }
      const view = new OperationView(this.model, { logOpen: true });
      view.setOperation(op);
      this._views.set(op.id, view);
      details.append(
        view.node,
        h(
          'div',
          { className: 'jp-Envpack-result' },
          renderJobResult(op, this._open)
        )
      );
      if (!this.model.log(op.id).length) {
        void this.model.follow(op.id); // replays the log of a finished job
      }
    };
    details.addEventListener('toggle', () => {
      if (this.isDisposed) {
        return; // the toggle event comes asynchronously, maybe after the section is gone
      }
      if (details.open) {
        this._expanded.add(op.id);
        expand();
      } else {
        this._expanded.delete(op.id);
      }
    });
    if (details.open) {
      expand();
    }
    return details;
  }

  private _disposeViews(): void {
    for (const view of this._views.values()) {
      view.dispose();
    }
    this._views.clear();
  }

  private _open: (path: string) => void;
  private _backend: HTMLSelectElement;
  private _registry: HTMLInputElement;
  private _schedule: HTMLInputElement;
  private _params: HTMLTextAreaElement;
  private _backendNotes: HTMLElement;
  private _onlyCurrent: HTMLInputElement;
  private _jobs: HTMLElement;
  private _listError: string;
  private _views = new Map<string, OperationView>();
  private _expanded = new Set<string>();
  private _signature = '';
  private _shownStatus: IServerStatus | null = null;
  private _usable = false;
}

export namespace ClusterSection {
  export interface IOptions {
    model: EnvpackModel;
    /**
     * Open a file of the server's contents (the fetched notebook).
     */
    openPath: (path: string) => void;
    rank?: number;
  }
}

/**
 * The DOM of a job's result: job id, backend, cluster state, and "Open <notebook>" when the
 * executed notebook came back.
 */
export function renderJobResult(
  op: IOperation,
  open: (path: string) => void
): HTMLElement[] {
  const result = op.result as IJobResult | null | undefined;
  if (!result || typeof result !== 'object') {
    return [];
  }
  const state = [result.state, result.message].filter(Boolean).join(': ');
  const nodes: HTMLElement[] = [
    h('div', { className: 'jp-Envpack-jobInfo' }, [
      h('span', { className: 'jp-Envpack-label', text: 'Job ' }),
      h('code', {
        className: 'jp-Envpack-jobId',
        text: String(result.job_id ?? '')
      }),
      h('span', { text: result.backend ? ` on ${result.backend}` : '' }),
      state
        ? h('span', { className: 'jp-Envpack-note', text: ` — ${state}` })
        : null
    ])
  ];
  const output = result.output_path;
  if (typeof output === 'string' && output) {
    nodes.push(openOutputLink(output, open));
  }
  return nodes;
}

let counter = 0;
function uid(name: string): string {
  counter += 1;
  return `jp-Envpack-${name}-${counter}`;
}

function input(name: string, placeholder: string): HTMLInputElement {
  return h('input', {
    className: `jp-Envpack-${name}`,
    attrs: {
      id: uid(name),
      type: 'text',
      placeholder,
      spellcheck: 'false',
      autocomplete: 'off'
    }
  });
}

function label(text: string, target: HTMLElement): HTMLLabelElement {
  return h('label', { text, attrs: { for: target.id } });
}
