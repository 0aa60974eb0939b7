#!/usr/bin/env -S node --max-semi-space-size=16
// The effect-appserver command. Installed, it is dist/cli/bin.js (the build keeps this first line)
// run by the `node` on PATH; in this repository npm scripts run this file on the Node 24 that the
// `node` devDependency installs (Node runs .ts files directly since 22.18/23.6).
//
// --max-semi-space-size=16 (MiB): on large machines V8 lets each of the young generation's
// semi-spaces grow to 32 MiB. A server's allocations that survive (a burst of new connections)
// make it grow to that size, and the process keeps the memory: in `npm run bench`, 10,000 idle
// keep-alive connections grew RSS by 43 MiB without this flag and by 21-25 MiB with it, at the
// same throughput. Run the file with `node --max-semi-space-size=N` to choose otherwise.
import { main } from "./main.ts"

main(process.argv.slice(2))
