/**
 * The plugin's commands (Containerise, Build, Rerun, Refresh, Open sidebar), in small pieces: when
 * they are enabled, which notebook they act on, and how their failures are shown.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { showErrorMessage } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { CommandRegistry } from '@lumino/commands';

import { errorMessage } from './api';
import { envpackIcon } from './icon';
import { EnvpackModel } from './model';
import { EnvpackSidebar, OperationSection } from './sidebar';
import { CommandIDs, IOperation } from './tokens';

/**
 * Commands that need the server's Docker engine.
 */
const ENGINE_COMMANDS = [
  CommandIDs.containerise,
  CommandIDs.build,
  CommandIDs.run
];

type Args = Record<string, unknown>;

interface IContext {
  app: JupyterFrontEnd;
  tracker: INotebookTracker;
  model: EnvpackModel;
  sidebar: EnvpackSidebar;
}

/**
 * Add every envpack command.
 */
export function addCommands(context: IContext): void {
  const { app, model } = context;
  notifyOnChanges(context);
  const canBuild = (args: Args): boolean =>
    hasTarget(context, args) && model.engineAvailable;
  const reveal = (op: IOperation): IOperation =>
    revealKind(context.sidebar, op);
  app.commands.addCommand(CommandIDs.containerise, {
    label: 'Containerise Notebook',
    caption: 'Snapshot, build and rerun the notebook in a container',
    icon: envpackIcon,
    isEnabled: canBuild,
    execute: guarded(context, 'Containerise failed', async p =>
      reveal(await model.containerise(p))
    )
  });
  app.commands.addCommand(CommandIDs.build, {
    label: 'Build Notebook Image',
    isEnabled: canBuild,
    execute: guarded(context, 'Build failed', async p =>
      reveal(await model.build(p))
    )
  });
  app.commands.addCommand(CommandIDs.run, {
    label: 'Rerun Notebook in Container',
    isEnabled: canBuild,
    execute: guarded(context, 'Rerun failed', async p =>
      reveal(await model.run(p))
    )
  });
  addViewCommands(context);
}

function addViewCommands({ app, model, sidebar }: IContext): void {
  app.commands.addCommand(CommandIDs.refresh, {
    label: 'Refresh Notebook Environment Snapshot',
    isEnabled: () => model.path !== null,
    execute: () => model.refresh()
  });
  app.commands.addCommand(CommandIDs.openSidebar, {
    label: 'Open Envpack Sidebar',
    icon: envpackIcon,
    execute: () => app.shell.activateById(sidebar.id)
  });
}

/**
 * Re-evaluate `isEnabled` whenever an input of it changes: the engine status, and the current
 * notebook (a toolbar button created before its notebook became current must not stay disabled).
 */
function notifyOnChanges({ app, tracker, model }: IContext): void {
  const notify = (): void => {
    for (const id of ENGINE_COMMANDS) {
      app.commands.notifyCommandChanged(id);
    }
  };
  model.changed.connect((_, kind) => {
    if (kind === 'status' || kind === 'path') {
      notify();
    }
  });
  tracker.currentChanged.connect(notify);
}

/**
 * A command acts on `args.path` (the toolbar passes its notebook) or on the current notebook.
 */
function hasTarget({ tracker }: IContext, args: Args): boolean {
  return typeof args.path === 'string' || tracker.currentWidget !== null;
}

/**
 * The notebook a command acts on, saved first (the server reads it from disk), and shown in the
 * sidebar.
 */
async function targetPath(
  { app, tracker, model, sidebar }: IContext,
  args: Args
) {
  const path =
    typeof args.path === 'string'
      ? args.path
      : tracker.currentWidget?.context.path;
  if (!path) {
    return null;
  }
  const panel = tracker.find(p => p.context.path === path);
  if (panel?.context.model.dirty && !panel.context.model.readOnly) {
    await panel.context.save();
  }
  model.path = path;
  app.shell.activateById(sidebar.id);
  return path;
}

/**
 * A command body that resolves the notebook and shows a failure as a dialog.
 */
function guarded(
  context: IContext,
  title: string,
  action: (path: string) => Promise<unknown>
): CommandRegistry.CommandFunc<Promise<void>> {
  return async (args: Args) => {
    const path = await targetPath(context, args);
    if (!path) {
      return;
    }
    try {
      await action(path);
    } catch (err) {
      await showErrorMessage(title, errorMessage(err));
    }
  };
}

/**
 * Show the sidebar section of an operation's kind.
 */
function revealKind(sidebar: EnvpackSidebar, op: IOperation): IOperation {
  sidebar.reveal(
    sidebar.widgets.find(
      w => w instanceof OperationSection && w.kind === op.kind
    )
  );
  return op;
}
