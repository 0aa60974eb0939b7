/**
 * Dispatch `primary` through the library, serving SCGI to a real nginx that clients speak HTTP to.
 * Needs nginx (Debian: nginx-light): skipped without it, except under CI=true, where it fails.
 */
import { describe } from "@effect/vitest"
import { nginxGate } from "../helpers/nginx.ts"
import { scgiBehindNginx } from "../helpers/prefork.ts"
import { dispatchSuite } from "./dispatch-suite.ts"

describe.skipIf(nginxGate().skip)("behind nginx", () => dispatchSuite(scgiBehindNginx))
