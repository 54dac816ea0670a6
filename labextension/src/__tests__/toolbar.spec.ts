import { Toolbar } from '@jupyterlab/apputils';
import { NotebookPanel } from '@jupyterlab/notebook';
import { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';

import { ContaineriseButtonExtension } from '../toolbar';
import { CommandIDs } from '../tokens';

describe('ContaineriseButtonExtension', () => {
  it('adds "Containerise" to the notebook toolbar; a click runs the command on the current path', async () => {
    // Given a notebook panel (only the parts the extension touches) and the command
    const commands = new CommandRegistry();
    const calls: unknown[] = [];
    commands.addCommand(CommandIDs.containerise, {
      execute: args => void calls.push(args)
    });
    const toolbar = new Toolbar();
    const panel = {
      toolbar,
      context: { path: 'a.ipynb' }
    } as unknown as NotebookPanel;
    Widget.attach(toolbar, document.body);

    // When the extension decorates it
    const handle = new ContaineriseButtonExtension(commands).createNew(panel);
    await new Promise(r => setTimeout(r, 0));

    // Then the button is there, and a click after a rename uses the new path
    const names = Array.from(toolbar.names());
    expect(names).toContain('envpackContainerise');
    const item = toolbar.node.querySelector<HTMLElement>(
      '.jp-Envpack-containeriseButton'
    )!;
    expect(item.textContent).toContain('Containerise');
    (panel.context as { path: string }).path = 'renamed.ipynb';
    const button = item.querySelector('button') ?? item;
    // ToolbarButton acts on the press (mousedown) and the click, like a real mouse sends them.
    button.dispatchEvent(new MouseEvent('mousedown', { bubbles: true }));
    button.dispatchEvent(new MouseEvent('click', { bubbles: true }));
    await new Promise(r => setTimeout(r, 0));
    expect(calls).toEqual([{ path: 'renamed.ipynb' }]);

    handle.dispose();
    expect(Array.from(toolbar.names())).not.toContain('envpackContainerise');
    toolbar.dispose();
  });
});
