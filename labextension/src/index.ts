/**
 * jupyter-envpack's JupyterLab plugin: the sidebar, the "Containerise" button and the commands.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Dialog, ICommandPalette, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { EnvpackClient, errorMessage } from './api';
import { envpackIcon } from './icon';
import { EnvpackModel } from './model';
import { createDefaultSections, EnvpackSidebar, OperationSection } from './sidebar';
import { ContaineriseButtonExtension } from './toolbar';
import { CommandIDs, IEnvpackSidebar, IOperation } from './tokens';

export * from './api';
export * from './model';
export * from './tokens';
export { EnvpackSection } from './sidebar/section';
export { OperationView } from './sidebar/operation';

const PLUGIN_ID = 'jupyter-envpack:plugin';

const plugin: JupyterFrontEndPlugin<IEnvpackSidebar> = {
  id: PLUGIN_ID,
  description: 'The envpack sidebar, the "Containerise" notebook button and commands.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, ISettingRegistry, ILayoutRestorer],
  provides: IEnvpackSidebar,
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null
  ): IEnvpackSidebar => {
    const client = new EnvpackClient({ serverSettings: app.serviceManager.serverSettings });
    const model = new EnvpackModel({ client });
    const sidebar = new EnvpackSidebar({ model, client });
    sidebar.title.icon = envpackIcon;
    sidebar.title.caption = 'Envpack: environment, Dockerfile, build and rerun';
    const sections = createDefaultSections({
      model,
      saveFile: (path, content) => saveFile(app, path, content),
      openPath: path => void app.commands.execute('docmanager:open', { path })
    });
    sections.forEach(section => sidebar.addSection(section));
    app.shell.add(sidebar, 'left', { rank: 650 });
    restorer?.add(sidebar, 'jupyter-envpack-sidebar');

    followNotebooks(tracker, model);
    addCommands(app, tracker, model, sidebar);
    app.docRegistry.addWidgetExtension('Notebook', new ContaineriseButtonExtension(app.commands));
    app.contextMenu.addItem({ command: CommandIDs.containerise, selector: '.jp-Notebook', rank: 90 });
    for (const command of Object.values(CommandIDs)) {
      palette?.addItem({ command, category: 'Envpack' });
    }

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          const update = (): void => {
            model.settings = {
              baseImage: (settings.get('baseImage').composite as string) ?? '',
              rerunAfterBuild: (settings.get('rerunAfterBuild').composite as boolean) ?? true
            };
          };
          update();
          settings.changed.connect(update);
        })
        .catch(reason => console.error('jupyter-envpack: cannot load settings', reason));
    }

    void app.restored.then(async () => {
      await model.refreshStatus();
      try {
        await model.reconnect();
      } catch (err) {
        console.warn('jupyter-envpack: cannot list operations:', errorMessage(err));
      }
    });
    return sidebar;
  }
};

/**
 * Make the model follow the active notebook, and refresh the snapshot when it is saved.
 */
function followNotebooks(tracker: INotebookTracker, model: EnvpackModel): void {
  const watched = new WeakSet<NotebookPanel>();
  const onCurrent = (): void => {
    const panel = tracker.currentWidget;
    if (!panel) {
      return;
    }
    model.path = panel.context.path;
    if (!watched.has(panel)) {
      watched.add(panel);
      panel.context.pathChanged.connect(() => {
        if (tracker.currentWidget === panel) {
          model.path = panel.context.path;
        }
      });
      panel.context.saveState.connect((_, state) => {
        if (state === 'completed' && model.path === panel.context.path) {
          void model.refresh();
        }
      });
    }
  };
  tracker.currentChanged.connect(onCurrent);
  onCurrent();
}

function addCommands(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  model: EnvpackModel,
  sidebar: EnvpackSidebar
): void {
  const { commands, shell } = app;
  const hasNotebook = (): boolean => tracker.currentWidget !== null;
  // Builds and reruns need the server's Docker engine (absent on Binder, for example).
  const canBuild = (): boolean => hasNotebook() && model.engineAvailable;
  model.changed.connect((_, kind) => {
    if (kind === 'status') {
      for (const id of [CommandIDs.containerise, CommandIDs.build, CommandIDs.run]) {
        commands.notifyCommandChanged(id);
      }
    }
  });
  const targetPath = async (args: Record<string, unknown>): Promise<string | null> => {
    const path = typeof args.path === 'string' ? args.path : tracker.currentWidget?.context.path;
    if (!path) {
      return null;
    }
    // The server reads the notebook from disk: save unsaved edits first.
    const panel = tracker.find(p => p.context.path === path);
    if (panel?.context.model.dirty && !panel.context.model.readOnly) {
      await panel.context.save();
    }
    model.path = path;
    shell.activateById(sidebar.id);
    return path;
  };
  const guarded =
    (title: string, action: (path: string) => Promise<unknown>) =>
    async (args: Record<string, unknown>): Promise<void> => {
      const path = await targetPath(args);
      if (!path) {
        return;
      }
      try {
        await action(path);
      } catch (err) {
        await showErrorMessage(title, errorMessage(err));
      }
    };

  const revealKind = (op: IOperation): IOperation => {
    sidebar.reveal(sidebar.widgets.find(w => w instanceof OperationSection && w.kind === op.kind));
    return op;
  };
  commands.addCommand(CommandIDs.containerise, {
    label: 'Containerise Notebook',
    caption: 'Snapshot, build and rerun the notebook in a container',
    icon: envpackIcon,
    isEnabled: canBuild,
    execute: guarded('Containerise failed', async path => revealKind(await model.containerise(path)))
  });
  commands.addCommand(CommandIDs.build, {
    label: 'Build Notebook Image',
    isEnabled: canBuild,
    execute: guarded('Build failed', async path => revealKind(await model.build(path)))
  });
  commands.addCommand(CommandIDs.run, {
    label: 'Rerun Notebook in Container',
    isEnabled: canBuild,
    execute: guarded('Rerun failed', async path => revealKind(await model.run(path)))
  });
  commands.addCommand(CommandIDs.refresh, {
    label: 'Refresh Notebook Environment Snapshot',
    isEnabled: hasNotebook,
    execute: () => model.refresh()
  });
  commands.addCommand(CommandIDs.openSidebar, {
    label: 'Open Envpack Sidebar',
    icon: envpackIcon,
    execute: () => shell.activateById(sidebar.id)
  });
}

/**
 * Save a text file through the contents service, asking before overwriting an existing one.
 */
async function saveFile(app: JupyterFrontEnd, path: string, content: string): Promise<boolean> {
  const contents = app.serviceManager.contents;
  let exists = true;
  try {
    await contents.get(path, { content: false });
  } catch {
    exists = false;
  }
  if (exists) {
    const answer = await showDialog({
      title: 'Overwrite file?',
      body: `${path} exists. Replace it with the generated Dockerfile?`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Overwrite' })]
    });
    if (!answer.button.accept) {
      return false;
    }
  }
  await contents.save(path, { type: 'file', format: 'text', content });
  return true;
}

export default plugin;
