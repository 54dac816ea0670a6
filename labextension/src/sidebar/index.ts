/**
 * The sections of the envpack sidebar.
 */
import { Widget } from '@lumino/widgets';

import { EnvpackModel } from '../model';
import { BuildSection } from './build';
import { ClusterSection } from './cluster';
import { DockerfileSection } from './dockerfile';
import { EnvironmentSection } from './environment';
import { HistorySection } from './history';
import { INotebookActions, RunSection } from './run';
import { ShareSection } from './share';
import { SweepSection } from './sweep';

export * from './announce';
export * from './build';
export * from './cluster';
export * from './dockerfile';
export * from './dom';
export * from './environment';
export * from './history';
export * from './operation';
export * from './opsection';
export * from './panel';
export * from './reconstruct';
export * from './run';
export * from './section';
export * from './share';
export * from './sweep';

/**
 * Create the built-in sections: Environment, Dockerfile, Build, Run, Sweep, Cluster, History,
 * Share.
 */
export function createDefaultSections(options: {
  model: EnvpackModel;
  saveFile: DockerfileSection.SaveFile;
  openPath: (path: string) => void;
  notebook?: INotebookActions;
}): Widget[] {
  const { model } = options;
  return [
    new EnvironmentSection({ model }),
    new DockerfileSection({ model, saveFile: options.saveFile }),
    new BuildSection({ model }),
    new RunSection({
      model,
      openPath: options.openPath,
      notebook: options.notebook
    }),
    new SweepSection({ model, openPath: options.openPath }),
    new ClusterSection({ model, openPath: options.openPath }),
    new HistorySection({ model }),
    new ShareSection({ model })
  ];
}
