/**
 * jupyter-envpack's JupyterLab plugin: the sidebar, the "Containerise" button and the commands.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  Notification,
  showDialog
} from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { EnvpackClient, errorMessage } from './api';
import { addCommands } from './commands';
import { envpackIcon } from './icon';
import { EnvpackModel } from './model';
import { followNotebooks, showCell, tagParametersCell } from './notebooks';
import { createDefaultSections, EnvpackSidebar } from './sidebar';
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
  description:
    'The envpack sidebar, the "Containerise" notebook button and commands.',
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
    const client = new EnvpackClient({
      serverSettings: app.serviceManager.serverSettings
    });
    const model = new EnvpackModel({ client });
    const sidebar = createSidebar(app, tracker, model, restorer);
    followNotebooks(tracker, model);
    addCommands({ app, tracker, model, sidebar });
    addNotebookEntries(app, palette);
    if (settingRegistry) {
      followSettings(settingRegistry, model);
    }
    void app.restored.then(() => connect(model));
    return sidebar;
  }
};

/**
 * The sidebar with the default sections, in the left area.
 */
function createSidebar(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  model: EnvpackModel,
  restorer: ILayoutRestorer | null
): EnvpackSidebar {
  const sidebar = new EnvpackSidebar({
    model,
    client: model.client,
    notify: (op, text) => notifyEnded(app, op, text)
  });
  sidebar.title.icon = envpackIcon;
  sidebar.title.caption = 'Envpack: environment, Dockerfile, build and rerun';
  const sections = createDefaultSections({
    model,
    saveFile: (path, content) => saveFile(app, path, content),
    openPath: path => void app.commands.execute('docmanager:open', { path }),
    notebook: {
      tagParameters: (path, cell) =>
        tagParametersCell(app, tracker, path, cell),
      showCell: (path, cell) => showCell(app, tracker, path, cell)
    }
  });
  sections.forEach(section => sidebar.addSection(section));
  app.shell.add(sidebar, 'left', { rank: 650 });
  restorer?.add(sidebar, 'jupyter-envpack-sidebar');
  return sidebar;
}

/**
 * The toolbar button, the notebook context menu item and the palette entries.
 */
function addNotebookEntries(
  app: JupyterFrontEnd,
  palette: ICommandPalette | null
): void {
  app.docRegistry.addWidgetExtension(
    'Notebook',
    new ContaineriseButtonExtension(app.commands)
  );
  app.contextMenu.addItem({
    command: CommandIDs.containerise,
    selector: '.jp-Notebook',
    rank: 90
  });
  for (const command of Object.values(CommandIDs)) {
    palette?.addItem({ command, category: 'Envpack' });
  }
}

/**
 * Keep the model's settings in step with the lab settings (schema/plugin.json).
 */
function followSettings(registry: ISettingRegistry, model: EnvpackModel): void {
  registry
    .load(PLUGIN_ID)
    .then(settings => {
      const update = (): void => {
        model.settings = {
          baseImage: (settings.get('baseImage').composite as string) ?? '',
          rerunAfterBuild:
            (settings.get('rerunAfterBuild').composite as boolean) ?? true
        };
      };
      update();
      settings.changed.connect(update);
    })
    .catch(reason =>
      console.error('jupyter-envpack: cannot load settings', reason)
    );
}

/**
 * After the lab is restored: the server status, then the operations (following running ones).
 */
async function connect(model: EnvpackModel): Promise<void> {
  await model.refreshStatus();
  try {
    await model.reconnect();
  } catch (err) {
    console.warn('jupyter-envpack: cannot list operations:', errorMessage(err));
  }
}

/**
 * A JupyterLab notification for an operation that ended while the sidebar was closed.
 */
function notifyEnded(app: JupyterFrontEnd, op: IOperation, text: string): void {
  const type =
    op.state === 'succeeded'
      ? 'success'
      : op.state === 'cancelled'
        ? 'info'
        : 'error';
  Notification.emit(text, type, {
    autoClose: 8000,
    actions: [
      {
        label: 'Show',
        caption: 'Open the Envpack sidebar',
        callback: () => app.shell.activateById('jp-envpack-sidebar')
      }
    ]
  });
}

/**
 * Save a text file through the contents service, asking before overwriting an existing one.
 */
async function saveFile(
  app: JupyterFrontEnd,
  path: string,
  content: string
): Promise<boolean> {
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
      buttons: [
        Dialog.cancelButton(),
        Dialog.warnButton({ label: 'Overwrite' })
      ]
    });
    if (!answer.button.accept) {
      return false;
    }
  }
  await contents.save(path, { type: 'file', format: 'text', content });
  return true;
}

export default plugin;
