/**
 * The notebooks side of the plugin: which notebook the sidebar follows, and what the report may
 * change in a notebook (tag its parameters cell).
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';

import { EnvpackModel } from './model';

/**
 * Executed copies written by a rerun (`<stem>.envpack.ipynb`): opening one from the report must
 * not switch the sidebar away from the report of the notebook it came from.
 */
export function isRerunOutput(path: string): boolean {
  return path.endsWith('.envpack.ipynb');
}

/**
 * Make the model follow the active notebook, and refresh the snapshot when it is saved.
 */
export function followNotebooks(
  tracker: INotebookTracker,
  model: EnvpackModel
): void {
  const watched = new WeakSet<NotebookPanel>();
  const follow = (panel: NotebookPanel): void => {
    if (tracker.currentWidget === panel && !isRerunOutput(panel.context.path)) {
      model.path = panel.context.path;
    }
  };
  const onCurrent = (): void => {
    const panel = tracker.currentWidget;
    if (!panel) {
      return;
    }
    follow(panel);
    if (!watched.has(panel)) {
      watched.add(panel);
      panel.context.pathChanged.connect(() => follow(panel));
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

/**
 * The notebook panel of `path`, opened first when no panel shows it, once its context is ready.
 */
async function openNotebook(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  path: string
): Promise<NotebookPanel> {
  const panel =
    tracker.find(p => p.context.path === path) ??
    ((await app.commands.execute('docmanager:open', {
      path
    })) as NotebookPanel);
  await panel.context.ready;
  return panel;
}

/**
 * Add the tag `parameters` to a cell (0-based, among all cells) and save the notebook, opening
 * it first when needed: the next rerun injects the parameters after that cell (papermill).
 */
export async function tagParametersCell(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  path: string,
  index: number
): Promise<void> {
  const panel = await openNotebook(app, tracker, path);
  const cell = panel.content.model?.cells.get(index);
  if (!cell) {
    throw new Error(
      `${path} has no cell ${index + 1} any more: reload it and rerun.`
    );
  }
  const tags = (cell.getMetadata('tags') as string[] | undefined) ?? [];
  if (!tags.includes('parameters')) {
    cell.setMetadata('tags', [...tags, 'parameters']);
  }
  await panel.context.save();
}

/**
 * Open the notebook at `path`, select the cell at `index` (0-based, among all cells) and scroll
 * it into view: a report row leads to its cell.
 */
export async function showCell(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  path: string,
  index: number
): Promise<void> {
  const panel = await openNotebook(app, tracker, path);
  app.shell.activateById(panel.id);
  const notebook = panel.content;
  const cell = notebook.widgets[index];
  if (!cell) {
    throw new Error(`${path} has no cell ${index + 1} any more.`);
  }
  notebook.activeCellIndex = index;
  await notebook.scrollToCell(cell, 'center');
}
