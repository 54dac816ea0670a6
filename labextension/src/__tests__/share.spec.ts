import { Widget } from '@lumino/widgets';

import { EnvpackClient } from '../api';
import { EnvpackModel } from '../model';
import {
  BuildSection,
  NO_ENGINE_NOTICE,
  RunSection,
  ShareSection
} from '../sidebar';
import { ContaineriseButtonExtension } from '../toolbar';
import { IBinderInfo } from '../tokens';
import { FakeServer, json } from './fakeserver';

const EVIL =
  '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>';
const LINK =
  'https://mybinder.org/v2/gh/org/repo/abc123?urlpath=lab/tree/notes/nb.ipynb';

function info(overrides: Partial<IBinderInfo> = {}): IBinderInfo {
  return {
    link: LINK,
    badges: {
      markdown: `[![Binder](https://mybinder.org/badge_logo.svg)](${LINK})`,
      rst: `.. image:: https://mybinder.org/badge_logo.svg\n   :target: ${LINK}`
    },
    warnings: [
      {
        code: 'commit-not-pushed',
        message: 'commit abc123 is not on the remote',
        hint: 'git push'
      }
    ],
    notebook: 'notes/nb.ipynb',
    ref: 'abc123',
    remote: { provider: 'gh', url: 'https://github.com/org/repo' },
    host: 'https://mybinder.org',
    files: null,
    ...overrides
  };
}

const tick = (ms = 20): Promise<void> => new Promise(r => setTimeout(r, ms));

describe('ShareSection', () => {
  let server: FakeServer;
  let model: EnvpackModel;
  let copied: string[];

  beforeEach(() => {
    server = new FakeServer();
    server.on('GET', 'snapshot', () => json({}));
    server.on('GET', 'dockerfile', () => new Response('FROM x\n'));
    model = new EnvpackModel({
      client: new EnvpackClient({ serverSettings: server.settings })
    });
    copied = [];
  });

  afterEach(() => {
    model.dispose();
    document.body.innerHTML = '';
    delete (window as any).__pwned;
  });

  function attach(): ShareSection {
    const section = new ShareSection({
      model,
      copy: text => void copied.push(text)
    });
    Widget.attach(section, document.body);
    return section;
  }

  it('shows the Binder link, copies it and both badges, and lists warnings with their fixes', async () => {
    server.on('GET', 'binder', () => json(info()));
    model.path = 'notes/nb.ipynb';
    const section = attach();
    expect(section.node.textContent).toContain('Checking the git repository');
    await tick();
    const request = server.requestsTo('GET', 'binder')[0];
    expect(request.url.searchParams.get('path')).toBe('notes/nb.ipynb');
    const link = section.node.querySelector<HTMLAnchorElement>(
      'a.jp-Envpack-binderLink'
    )!;
    expect(link.textContent).toBe(LINK);
    expect(link.getAttribute('href')).toBe(LINK);
    expect(link.getAttribute('rel')).toContain('noopener');
    const buttons = Array.from(
      section.node.querySelectorAll<HTMLButtonElement>('.jp-Envpack-copy')
    );
    expect(buttons.map(b => b.textContent)).toEqual([
      'Copy link',
      'Copy Markdown',
      'Copy RST'
    ]);
    buttons.forEach(b => b.click());
    expect(copied).toEqual([LINK, info().badges!.markdown, info().badges!.rst]);
    expect(section.node.textContent).toContain('Copied the RST badge.');
    const warning = section.node.querySelector<HTMLElement>(
      '[data-code="commit-not-pushed"]'
    )!;
    expect(warning.textContent).toContain('commit abc123 is not on the remote');
    expect(warning.textContent).toContain('Fix: git push');
    section.dispose();
  });

  it('makes only https links clickable and renders untrusted text as text (A7)', async () => {
    server.on('GET', 'binder', () =>
      json(
        info({
          link: 'javascript:alert(1)',
          badges: { markdown: EVIL, rst: EVIL },
          warnings: [{ code: 'x', message: EVIL, hint: EVIL }]
        })
      )
    );
    model.path = 'nb.ipynb';
    const section = attach();
    await tick();
    expect(section.node.querySelector('a.jp-Envpack-binderLink')).toBeNull();
    expect(
      section.node.querySelector('code.jp-Envpack-binderLink')!.textContent
    ).toBe('javascript:alert(1)');
    expect(section.node.querySelector('a[href^="javascript"]')).toBeNull();
    expect(document.body.querySelector('img, script')).toBeNull();
    expect(section.node.textContent).toContain('<script>');
    expect((window as any).__pwned).toBeUndefined();
    section.dispose();
  });

  it('without a link says why (the warnings) and shows server errors readably', async () => {
    server.on('GET', 'binder', () =>
      json(
        info({
          link: null,
          badges: null,
          warnings: [
            {
              code: 'no-git-repo',
              message: 'the notebook is not in a git repository',
              hint: 'git init'
            }
          ]
        })
      )
    );
    model.path = 'nb.ipynb';
    const section = attach();
    await tick();
    expect(section.node.textContent).toContain(
      'No Binder link yet: see the warnings below.'
    );
    expect(section.node.textContent).toContain('Fix: git init');
    expect(section.node.querySelectorAll('.jp-Envpack-copy')).toHaveLength(0);
    server.on('GET', 'binder', () =>
      json(
        {
          reason: 'not-found',
          message: "no notebook at 'x.ipynb'",
          hint: 'paths are relative to the server root'
        },
        404
      )
    );
    model.path = 'x.ipynb';
    await tick();
    expect(section.node.querySelector('.jp-Envpack-error')!.textContent).toBe(
      "no notebook at 'x.ipynb' (paths are relative to the server root)"
    );
    section.dispose();
  });

  it('"Write binder/ folder" posts the path, reports the files and reloads the warnings', async () => {
    let written = false;
    server.on('GET', 'binder', () =>
      json(
        info({
          warnings: written
            ? [
                {
                  code: 'binder-uncommitted',
                  message: 'binder/ has uncommitted changes',
                  hint: 'git add binder'
                }
              ]
            : [
                {
                  code: 'binder-missing',
                  message: 'there is no binder/ folder',
                  hint: 'write it'
                }
              ]
        })
      )
    );
    server.on('POST', 'binder', () => {
      written = true;
      return json({
        folder: 'binder',
        written: ['binder/requirements.txt', 'binder/runtime.txt'],
        removed: ['binder/apt.txt'],
        files: {}
      });
    });
    model.path = 'notes/nb.ipynb';
    const section = attach();
    await tick();
    expect(
      section.node.querySelector('[data-code="binder-missing"]')
    ).not.toBeNull();
    section.node
      .querySelector<HTMLButtonElement>('.jp-Envpack-writeBinder')!
      .click();
    await tick();
    expect(JSON.parse(server.requestsTo('POST', 'binder')[0].body!)).toEqual({
      path: 'notes/nb.ipynb'
    });
    expect(section.node.textContent).toContain(
      'Wrote binder/requirements.txt, binder/runtime.txt; removed binder/apt.txt. Commit and push them.'
    );
    expect(
      section.node.querySelector('[data-code="binder-uncommitted"]')
    ).not.toBeNull();
    expect(server.requestsTo('GET', 'binder')).toHaveLength(2);
    section.dispose();
  });

  it('checks again when the notebook is saved (a new snapshot)', async () => {
    server.on('GET', 'binder', () => json(info()));
    model.path = 'notes/nb.ipynb';
    const section = attach();
    await tick();
    const before = server.requestsTo('GET', 'binder').length;
    await model.refreshSnapshot(); // what a save does
    await tick();
    expect(server.requestsTo('GET', 'binder')).toHaveLength(before + 1);
    expect(
      section.node.querySelector('.jp-Envpack-binderLink')!.textContent
    ).toBe(LINK);
    section.dispose();
  });

  it('a stale answer for a previous notebook is not shown', async () => {
    let release: () => void = () => undefined;
    server.on('GET', 'binder', r =>
      r.url.searchParams.get('path') === 'slow.ipynb'
        ? new Promise<Response>(resolve => {
            release = () =>
              resolve(json(info({ link: 'https://mybinder.org/slow' })));
          })
        : json(info())
    );
    model.path = 'slow.ipynb';
    const section = attach();
    await tick();
    model.path = 'notes/nb.ipynb';
    await tick();
    release();
    await tick();
    expect(
      section.node.querySelector('.jp-Envpack-binderLink')!.textContent
    ).toBe(LINK);
    section.dispose();
  });
});

describe('without a Docker engine (e.g. on Binder)', () => {
  it('Share says build/run are disabled; Build, Run and Containerise are disabled', async () => {
    const server = new FakeServer();
    server.on('GET', 'snapshot', () => json({}));
    server.on('GET', 'dockerfile', () => new Response('FROM x\n'));
    server.on('GET', 'binder', () => json(info()));
    let reachable = false;
    server.on('GET', 'status', () =>
      json({
        engine: reachable
          ? { reachable: true }
          : {
              reachable: false,
              error: { message: 'Docker engine not reachable' }
            }
      })
    );
    const model = new EnvpackModel({
      client: new EnvpackClient({ serverSettings: server.settings })
    });
    model.path = 'nb.ipynb';
    const share = new ShareSection({ model });
    const build = new BuildSection({ model });
    const run = new RunSection({ model, openPath: () => undefined });
    [share, build, run].forEach(w => Widget.attach(w, document.body));
    const buttons = (): HTMLButtonElement[] => [
      build.node.querySelector<HTMLButtonElement>('.jp-Envpack-buildButton')!,
      run.node.querySelector<HTMLButtonElement>('.jp-Envpack-runButton')!
    ];
    expect(buttons().map(b => b.disabled)).toEqual([false, false]); // unknown: enabled

    await model.refreshStatus();
    await tick();
    expect(
      share.node.querySelector('.jp-Envpack-engineNotice')!.textContent
    ).toBe(NO_ENGINE_NOTICE);
    expect(NO_ENGINE_NOTICE).toMatch(
      /Build, Run and Containerise are disabled.*Snapshot, Dockerfile and Binder still work/
    );
    expect(
      share.node.querySelector('.jp-Envpack-binderLink')!.textContent
    ).toBe(LINK); // Binder still works
    expect(buttons().map(b => b.disabled)).toEqual([true, true]);
    expect(buttons()[0].title).toMatch(/Docker engine is not reachable/);

    reachable = true;
    await model.refreshStatus();
    expect(share.node.querySelector('.jp-Envpack-engineNotice')).toBeNull();
    expect(buttons().map(b => b.disabled)).toEqual([false, false]);
    [share, build, run].forEach(w => w.dispose());
    model.dispose();
  });

  it("the toolbar button follows the command's enabled state", async () => {
    const { CommandRegistry } = await import('@lumino/commands');
    const { Toolbar } = await import('@jupyterlab/apputils');
    const { CommandIDs } = await import('../tokens');
    const commands = new CommandRegistry();
    let enabled = false;
    commands.addCommand(CommandIDs.containerise, {
      execute: () => undefined,
      isEnabled: () => enabled
    });
    const toolbar = new Toolbar();
    Widget.attach(toolbar, document.body);
    const panel = { toolbar, context: { path: 'a.ipynb' } } as any;
    const handle = new ContaineriseButtonExtension(commands).createNew(panel);
    await tick(50); // ToolbarButton renders with React on the next animation frame
    const item = toolbar.node.querySelector<HTMLElement>(
      '.jp-Envpack-containeriseButton'
    )!;
    // JupyterLab 4 renders a <jp-button> web component: its disabled state is an attribute.
    const disabled = (): boolean =>
      item.getAttribute('aria-disabled') === 'true';
    expect(disabled()).toBe(true);
    enabled = true;
    commands.notifyCommandChanged(CommandIDs.containerise);
    await tick(50);
    expect(disabled()).toBe(false);
    // Disabled, the button says why (issue 12.3)
    enabled = false;
    commands.notifyCommandChanged(CommandIDs.containerise);
    await tick(50);
    expect(item.getAttribute('title')).toMatch(
      /Docker engine is not reachable/
    );
    handle.dispose();
    toolbar.dispose();
  });
});
