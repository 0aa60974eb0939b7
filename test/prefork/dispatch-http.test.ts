/**
 * Dispatch `primary` through the library, clients speaking HTTP to the pool directly.
 */
import { directHttp } from "../helpers/prefork.ts"
import { dispatchSuite } from "./dispatch-suite.ts"

dispatchSuite(directHttp)
