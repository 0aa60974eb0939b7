/**
 * The prefork pool through the library, clients speaking HTTP to it directly.
 */
import { directHttp } from "../helpers/prefork.ts"
import { poolSuite } from "./pool-suite.ts"

poolSuite(directHttp)
