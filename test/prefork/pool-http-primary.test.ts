/**
 * The pool suite with dispatch `primary` (the primary accepts and hands connections over),
 * clients speaking HTTP to the pool directly.
 */
import { directHttp } from "../helpers/prefork.ts"
import { poolSuite } from "./pool-suite.ts"

poolSuite(directHttp, "primary")
