#!/usr/bin/env node
'use strict';
// CommonJS on purpose: libuv reads UV_THREADPOOL_SIZE once, when its threadpool starts, and an
// ES-module entry point starts it while loading. Every TUN device and tunnel socket holds one pool
// thread in poll(2) (src/io/readiness.ts), so give the pool room before anything else loads; an
// operator's larger value is kept.
const THREADPOOL_THREADS = 16;
if (!(Number(process.env.UV_THREADPOOL_SIZE) >= THREADPOOL_THREADS)) {
  process.env.UV_THREADPOOL_SIZE = String(THREADPOOL_THREADS);
}
import('../dist/cli/main.js').then(
  (m) => m.run(),
  (e) => {
    process.stderr.write(`firezone-gateway: cannot load: ${e?.stack ?? e}\n`);
    process.exit(1);
  },
);
