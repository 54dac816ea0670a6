/**
 * Reconstruction in the sidebar (issue 13.2): offer to reconstruct an environment whose imports are
 * mostly unresolved, and say plainly on every snapshot or report made from one that it is an
 * educated reconstruction, not what ran.
 */
import { IReconstruction, ISnapshot } from '../tokens';
import { button, h } from './dom';

/**
 * True when most of the notebook's imports could not be resolved in the kernel's environment.
 */
export function mostlyUnresolved(snapshot: ISnapshot): boolean {
  if (snapshot.origin === 'reconstructed') {
    return false;
  }
  const unresolved = snapshot.warnings.filter(
    w => w.code === 'unresolved-import'
  ).length;
  const resolved = snapshot.packages.filter(p => p.requested).length;
  return unresolved > 0 && unresolved >= resolved;
}

/**
 * The plain notice on a reconstructed snapshot or report (`null` for anything else).
 */
export function reconstructionNotice(
  origin: string | undefined,
  reconstruction?: IReconstruction | null
): HTMLElement | null {
  if (origin !== 'reconstructed') {
    return null;
  }
  const date = reconstruction?.as_of_used ?? reconstruction?.as_of;
  const text =
    'Educated reconstruction, not what ran: packages were guessed from the notebook and ' +
    `its repository${date ? ` and pinned as of ${date}` : ''}.`;
  return h('div', {
    className: 'jp-Envpack-reconstructed',
    text,
    attrs: { role: 'note', 'data-origin': 'reconstructed' }
  });
}

/**
 * "Reconstruct environment (as of DATE)" with an optional date (empty: the server's default,
 * the notebook's last commit date).
 */
export function reconstructOffer(
  start: (asOf: string | undefined) => void
): HTMLElement {
  const date = h('input', {
    className: 'jp-Envpack-asOf',
    attrs: {
      type: 'date',
      'aria-label': 'Reconstruct as of date (empty: the notebook’s last change)'
    }
  });
  const label = () =>
    `Reconstruct environment (as of ${date.value || 'the notebook’s last change'})`;
  const go = button(label(), () => start(date.value || undefined), {
    className: 'jp-Envpack-reconstruct',
    title:
      'Most imports are not installed here: guess the packages from the repository and the ' +
      'imports, verify them, and pin the versions released by that date'
  });
  date.addEventListener('input', () => (go.textContent = label()));
  return h('div', { className: 'jp-Envpack-reconstructOffer' }, [
    h('div', {
      className: 'jp-Envpack-note',
      text: 'Most imports are not installed in this kernel.'
    }),
    h('div', { className: 'jp-Envpack-row' }, [date, go])
  ]);
}
