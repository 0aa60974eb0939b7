/**
 * SCGI as the connection driver's protocol: the netstring parser, the mapping of a request's
 * variables to the request the application sees (a request that does not map is refused with
 * 400), and CGI responses. The connection carries one request and closes after its response.
 *
 * @since 0.1.0
 */
import type { Protocol } from "../conn/Protocol.ts"
import { simpleScgiResponse } from "../wire/simpleResponse.ts"
import { mapRequest } from "./Environ.ts"
import { ScgiExchange } from "./ScgiExchange.ts"
import { type ScgiHead, type ScgiLimits, ScgiParser } from "./ScgiParser.ts"
import { ScgiProtocolError } from "./ScgiProtocolError.ts"

/**
 * @since 0.1.0
 * @category constructors
 */
export const scgiProtocol = (
  limits: ScgiLimits,
  /** Variables every request gets, under its own (wsgitools' `config`). */
  environ: Readonly<Record<string, string>>
): Protocol<ScgiHead, ScgiExchange> => ({
  decoder: () => new ScgiParser(limits),
  exchange: (host, head) => {
    const mapped = mapRequest(head.variables, environ)
    return typeof mapped === "string"
      ? new ScgiProtocolError({ status: 400, reason: mapped })
      : new ScgiExchange(host, mapped, limits.maxBodySize)
  },
  simpleResponse: (status, text) => simpleScgiResponse(status, text),
  peerIsClient: false
})
