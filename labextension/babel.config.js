// Babel turns the ES-module JupyterLab packages into CommonJS for jest.
module.exports = require('@jupyterlab/testutils/lib/babel.config');
