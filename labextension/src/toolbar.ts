/**
 * The "Containerise" button of the notebook toolbar.
 */
import { ToolbarButton } from '@jupyterlab/apputils';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { INotebookModel, NotebookPanel } from '@jupyterlab/notebook';
import { CommandRegistry } from '@lumino/commands';
import { DisposableDelegate, IDisposable } from '@lumino/disposable';

import { envpackIcon } from './icon';
import { CommandIDs } from './tokens';

/**
 * Adds the button to every notebook panel; a click runs `envpack:containerise-notebook` on that
 * notebook's current path (read at click time, so renames are followed).
 */
export class ContaineriseButtonExtension implements DocumentRegistry.IWidgetExtension<
  NotebookPanel,
  INotebookModel
> {
  constructor(private readonly _commands: CommandRegistry) {}

  createNew(panel: NotebookPanel): IDisposable {
    const button = new ToolbarButton({
      className: 'jp-Envpack-containeriseButton',
      icon: envpackIcon,
      label: 'Containerise',
      tooltip: 'Snapshot, build and rerun this notebook in a container',
      // The command is enabled whenever the engine is reachable (see commands.ts).
      disabledTooltip:
        "Disabled: the server's Docker engine is not reachable (the Envpack sidebar says why)",
      onClick: () => {
        void this._commands.execute(CommandIDs.containerise, {
          path: panel.context.path
        });
      }
    });
    // Beside the cell type selector; at the end when a customised toolbar has none.
    if (!panel.toolbar.insertAfter('cellType', 'envpackContainerise', button)) {
      panel.toolbar.addItem('envpackContainerise', button);
    }
    // Disabled while the command is (e.g. the server's Docker engine is unreachable).
    const sync = (): void => {
      if (!button.isDisposed) {
        button.enabled = this._commands.isEnabled(CommandIDs.containerise, {
          path: panel.context.path
        });
      }
    };
    const onChanged = (
      _: CommandRegistry,
      change: CommandRegistry.ICommandChangedArgs
    ): void => {
      if (change.id === undefined || change.id === CommandIDs.containerise) {
        sync();
      }
    };
    this._commands.commandChanged.connect(onChanged);
    sync();
    return new DisposableDelegate(() => {
      this._commands.commandChanged.disconnect(onChanged);
      button.dispose();
    });
  }
}
