/*
 * Jest for the labextension: JupyterLab's shared config (jsdom, ts-jest, babel for the ES-module
 * packages), rooted at the repository (package.json lives there) with the tests in
 * labextension/src/__tests__. Run with `jlpm test`.
 */
const path = require('path');
const jestJupyterLab = require('@jupyterlab/testutils/lib/jest-config');

const root = path.resolve(__dirname, '..');
const esModules = [
  '@codemirror',
  '@jupyter/ydoc',
  '@jupyter/react-components',
  '@jupyter/web-components',
  '@jupyterlab/',
  '@microsoft',
  'exenv-es6',
  'lib0',
  'marked',
  'nanoid',
  'vscode-ws-jsonrpc',
  'y-protocols',
  'y-websocket',
  'yjs'
].join('|');
const base = jestJupyterLab(root);

module.exports = {
  ...base,
  rootDir: root,
  roots: ['<rootDir>/labextension/src'],
  testRegex: 'labextension/src/__tests__/.*\\.spec\\.ts$',
  reporters: ['default'],
  // Inside node_modules (git-ignored) so a coverage run leaves the work tree clean.
  coverageDirectory: path.join(
    root,
    'node_modules',
    '.cache',
    'envpack-coverage'
  ),
  collectCoverageFrom: [
    'labextension/src/**/*.ts',
    '!labextension/src/__tests__/**'
  ],
  transform: {
    ...base.transform,
    '^.+\\.tsx?$': [
      'ts-jest/legacy',
      { tsconfig: path.join(__dirname, 'tsconfig.test.json') }
    ],
    '^.+\\.jsx?$': [
      'babel-jest',
      { configFile: path.join(__dirname, 'babel.config.js') }
    ]
  },
  transformIgnorePatterns: [`/node_modules/(?!${esModules}).+`]
};
