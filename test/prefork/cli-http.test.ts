/**
 * The prefork pool through the command line, clients speaking HTTP to it directly.
 */
import { directHttp } from "../helpers/prefork.ts"
import { cliSuite } from "./cli-suite.ts"

cliSuite(directHttp)
