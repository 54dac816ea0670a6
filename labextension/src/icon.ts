/**
 * The envpack icon (a container box), themed through JupyterLab's `jp-icon3` fill class.
 */
import { LabIcon } from '@jupyterlab/ui-components';

// Inlined rather than imported from style/: tsc's outDir (lib/) is not beside labextension/style.
const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 2 3 6.5v11L12 22l9-4.5v-11L12 2zm0 2.24 6.53 3.26L12 10.76 5.47 7.5 12 4.24zM5 9.12l6 3v7.64l-6-3V9.12zm8 10.64v-7.64l6-3v7.64l-6 3z"/>
  </g>
</svg>`;

export const envpackIcon = new LabIcon({
  name: 'jupyter-envpack:icon',
  svgstr
});
