/**
 * The pool suite with dispatch `primary`, serving SCGI to a real nginx that clients speak HTTP to.
 * Needs nginx (Debian: nginx-light): skipped without it, except under CI=true, where it fails.
 */
import { describe } from "@effect/vitest"
import { nginxGate } from "../helpers/nginx.ts"
import { scgiBehindNginx } from "../helpers/prefork.ts"
import { poolSuite } from "./pool-suite.ts"

describe.skipIf(nginxGate().skip)("behind nginx", () => poolSuite(scgiBehindNginx, "primary"))
