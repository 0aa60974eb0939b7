#!/usr/bin/env node
// The effect-appserver command. npm scripts and npx run it on the Node 24 that the `node`
// devDependency installs (Node runs .ts files directly since 22.18/23.6).
import { main } from "./main.ts"

main(process.argv.slice(2))
