#!/usr/bin/env node
'use strict';
// The command-line entry point; the code lives in lib/cli (compiled to dist/).
const { main } = require('../dist/lib/cli/main.js');

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (error) => {
    process.stderr.write(`dmabuf: unexpected error: ${error && error.stack ? error.stack : error}\n`);
    process.exitCode = 1;
  },
);
