/**
 * The prefork pool through the command line with `--dispatch primary` (the primary accepts and
 * hands connections over), clients speaking HTTP to it directly.
 */
import { directHttp } from "../helpers/prefork.ts"
import { cliSuite } from "./cli-suite.ts"

cliSuite(directHttp, "primary")
