/**
 * Build: start a build, follow its progress and log, show the image tag ("cached" when nothing had
 * to be built), cancel.
 */
import { EnvpackModel } from '../model';
import { IBuildResult, IOperation, IRunResult } from '../tokens';
import { copyButton, h } from './dom';
import { OperationSection } from './opsection';

export class BuildSection extends OperationSection {
  constructor(options: BuildSection.IOptions) {
    super({
      label: 'Build',
      rank: 30,
      kind: 'build',
      needsEngine: true,
      buttonLabel: 'Build image',
      buttonTitle: 'Build the container image of this notebook',
      buttonClass: 'jp-Envpack-buildButton',
      ...options
    });
  }

  protected start(): Promise<unknown> {
    return this.model.build();
  }

  protected renderResult(op: IOperation | null): void {
    const result =
      op?.state === 'succeeded' ? (op.result as IBuildResult | null) : null;
    // "Containerise" builds inside a run: show that image when it is newer than the last build.
    const run = this.model.latest('run');
    const fromRun = (run?.result as IRunResult | null | undefined)?.build;
    if (fromRun?.image && (!op || created(run!) > created(op))) {
      this.result.append(
        h('div', {
          className: 'jp-Envpack-note',
          text: 'Built by the last rerun:'
        }),
        ...renderImage(fromRun)
      );
    } else if (result?.image) {
      this.result.append(...renderImage(result));
    }
  }
}

export namespace BuildSection {
  export interface IOptions {
    model: EnvpackModel;
    rank?: number;
    logOpen?: boolean;
  }
}

/**
 * "Image <tag> [cached] 12.3 s" for a build result.
 */
export function renderImage(result: IBuildResult): HTMLElement[] {
  const nodes = [
    h('span', { className: 'jp-Envpack-label', text: 'Image ' }),
    h('code', {
      className: 'jp-Envpack-image',
      text: result.image,
      title: result.image
    }),
    copyButton(result.image, 'image tag')
  ];
  if (result.cached) {
    nodes.push(
      h('span', {
        className: 'jp-Envpack-badge jp-Envpack-cached',
        text: 'cached'
      })
    );
  }
  if (typeof result.duration === 'number') {
    nodes.push(
      h('span', {
        className: 'jp-Envpack-duration',
        text: ` ${result.duration.toFixed(1)} s`
      })
    );
  }
  return nodes;
}

function created(op: IOperation): number {
  return typeof op.created === 'number'
    ? op.created
    : Date.parse(op.created ?? '') || 0;
}
