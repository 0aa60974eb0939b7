/**
 * The CGI environment of an SCGI request: how its variables map to the HTTP request the
 * application sees, and the `ScgiEnviron` service that gives the application the whole environment.
 *
 * @since 0.1.0
 */
import { Context, Effect, type Exit, Schema } from "effect"
import { isToken } from "../wire/chars.ts"

const port = Schema.NumberFromString.check(Schema.isInt(), Schema.isBetween({ minimum: 0, maximum: 65535 }))
const text = Schema.optionalKey(Schema.String)

/**
 * The standard CGI meta-variables (RFC 3875 §4.1) and the extensions front ends commonly send
 * (nginx's `scgi_params`: REQUEST_URI, DOCUMENT_URI, REQUEST_SCHEME, HTTPS, REMOTE_PORT), decoded.
 *
 * @since 0.1.0
 * @category schemas
 */
export const CgiVariables = Schema.Struct({
  CONTENT_LENGTH: Schema.NumberFromString.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0)),
  // RFC 9110 §9.1: a method is a token.
  REQUEST_METHOD: Schema.String.check(Schema.isPattern(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/)),
  SCGI: Schema.Literal("1"),
  REQUEST_URI: text,
  DOCUMENT_URI: text,
  DOCUMENT_ROOT: text,
  SCRIPT_NAME: text,
  PATH_INFO: text,
  PATH_TRANSLATED: text,
  QUERY_STRING: text,
  CONTENT_TYPE: text,
  SERVER_NAME: text,
  SERVER_PORT: Schema.optionalKey(port),
  SERVER_PROTOCOL: text,
  SERVER_SOFTWARE: text,
  GATEWAY_INTERFACE: text,
  REQUEST_SCHEME: text,
  HTTPS: text,
  REMOTE_ADDR: text,
  REMOTE_PORT: Schema.optionalKey(port),
  REMOTE_HOST: text,
  REMOTE_USER: text,
  AUTH_TYPE: text
})

/**
 * @since 0.1.0
 * @category models
 */
export type CgiVariables = typeof CgiVariables.Type

/**
 * What the application can read of an SCGI request's environment.
 *
 * @since 0.1.0
 * @category models
 */
export interface Environ {
  /** Every variable: the request's, over the server's static `environ` option. */
  readonly variables: Readonly<Record<string, string>>
  /** Whether the front end received the request over TLS (HTTPS on/1/yes or REQUEST_SCHEME https). */
  readonly https: boolean
  /**
   * The standard variables decoded with `CgiVariables`, on first use: a malformed one (a
   * REMOTE_PORT that is not a port) is a `SchemaError` naming it, for the app that reads it,
   * rather than a refused request. Fails on servers that are not SCGI, where there is no
   * environment.
   */
  readonly cgi: Effect.Effect<CgiVariables, Schema.SchemaError>
}

const decodeCgi = Schema.decodeUnknownExit(CgiVariables)

/**
 * The environment of one request. The variables record is built when first read: most apps never
 * read it, and a record of some 25 fresh names costs more than the rest of the mapping together.
 */
class RequestEnviron implements Environ {
  readonly https: boolean
  private readonly received: ReadonlyArray<string>
  private readonly statics: Readonly<Record<string, string>>
  private record: Readonly<Record<string, string>> | undefined
  private decoded: Exit.Exit<CgiVariables, Schema.SchemaError> | undefined

  constructor(received: ReadonlyArray<string>, statics: Readonly<Record<string, string>>, https: boolean) {
    this.received = received
    this.statics = statics
    this.https = https
  }

  get variables(): Readonly<Record<string, string>> {
    return (this.record ??= mergeVariables(this.received, this.statics))
  }

  get cgi(): Effect.Effect<CgiVariables, Schema.SchemaError> {
    return Effect.suspend(() => (this.decoded ??= decodeCgi(this.variables)))
  }
}

/** The request's variables over the static ones; a repeated HTTP_* variable holds its values joined. */
const mergeVariables = (
  received: ReadonlyArray<string>,
  statics: Readonly<Record<string, string>>
): Record<string, string> => {
  const variables: Record<string, string> = { ...statics }
  let seen: Set<string> | undefined
  for (let i = 0; i < received.length; i += 2) {
    const name = received[i]
    const value = received[i + 1]
    if (name.startsWith("HTTP_")) {
      // A repeated header field (nginx before 1.23 repeats the variable): both values are kept.
      seen ??= new Set()
      variables[name] = seen.has(name) ? `${variables[name]}, ${value}` : value
      seen.add(name)
    } else {
      variables[name] = value
    }
  }
  return variables
}

const emptyEnviron: Environ = new RequestEnviron([], {}, false)

/**
 * The SCGI environment of the request being handled. A reference rather than a plain service, so
 * apps that read it run unchanged on servers that are not SCGI (where it is empty) and need no
 * extra requirement in their type.
 *
 * @since 0.1.0
 * @category services
 */
export const ScgiEnviron: Context.Reference<Environ> = Context.Reference<Environ>("effect-appserver/ScgiEnviron", {
  defaultValue: () => emptyEnviron
})

/**
 * The request as the HTTP side sees it, built from the variables.
 *
 * @since 0.1.0
 * @category models
 */
export interface MappedRequest {
  readonly method: string
  readonly url: string
  /** `[name0, value0, ...]` with lowercase HTTP names. */
  readonly rawHeaders: ReadonlyArray<string>
  readonly remoteAddress: string | undefined
  readonly protocol: "http" | "https"
  /** SERVER_PROTOCOL, for the access log. */
  readonly protocolLabel: string
  readonly environ: Environ
}

const truthy = new Set(["on", "1", "yes"])

/** RFC 3986 §3.3 pchar plus "/": what may stand unencoded in a path rebuilt from decoded parts. */
const pathSafe = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/]*$/

/**
 * CGI's SCRIPT_NAME and PATH_INFO are decoded (RFC 3875 §4.1.5, §4.1.13); re-encode them so the
 * rebuilt URL parses back to the same path. Characters are single bytes (Latin-1), as received.
 */
const encodePath = (path: string): string => {
  if (pathSafe.test(path)) return path
  let out = ""
  for (const char of path) {
    out += pathSafe.test(char) ? char : `%${char.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`
  }
  return out
}

/** What the mapping reads of the variables (the request's, else the static ones). */
interface Picked {
  method: string | undefined
  requestUri: string | undefined
  scriptName: string | undefined
  pathInfo: string | undefined
  query: string | undefined
  contentType: string | undefined
  contentLength: string | undefined
  https: string | undefined
  scheme: string | undefined
  serverName: string | undefined
  serverPort: string | undefined
  remoteAddr: string | undefined
  serverProtocol: string | undefined
}

/** The path and query of REQUEST_URI (origin-form, or absolute-form reduced as in RFC 9112 §3.2.2). */
const urlOf = (picked: Picked): string | undefined => {
  const uri = picked.requestUri
  if (uri !== undefined && uri !== "") {
    if (uri.charCodeAt(0) === 0x2f) return uri
    const absolute = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*([/?][^#]*)?$/.exec(uri)
    if (absolute !== null) {
      const rest = absolute[1] ?? "/"
      return rest.charCodeAt(0) === 0x3f ? `/${rest}` : rest
    }
    return undefined
  }
  // RFC 3875 §4.1.13, §4.1.5, §4.1.7: the URL is SCRIPT_NAME + PATH_INFO (+ "?" QUERY_STRING).
  const path = encodePath((picked.scriptName ?? "") + (picked.pathInfo ?? "")) || "/"
  if (path.charCodeAt(0) !== 0x2f) return undefined
  const query = picked.query
  return query === undefined || query === "" ? path : `${path}?${query}`
}

/** Header names of HTTP_* variables already converted (bounded, like the HTTP parser's interning). */
const headerNames = new Map<string, string>()

/** `HTTP_X_FOO` → `x-foo` (RFC 3875 §4.1.18 in reverse). */
const headerName = (variable: string): string => {
  const known = headerNames.get(variable)
  if (known !== undefined) return known
  const name = variable.slice(5).toLowerCase().replaceAll("_", "-")
  if (headerNames.size < 512) headerNames.set(variable, name)
  return name
}

/** The Host a request without HTTP_HOST gets: SERVER_NAME, with SERVER_PORT unless it is the scheme's. */
const hostOf = (picked: Picked, https: boolean): string | undefined => {
  const name = picked.serverName
  if (name === undefined || name === "") return undefined
  const port = picked.serverPort
  if (port === undefined || !/^[0-9]{1,5}$/.test(port) || port === (https ? "443" : "80")) return name
  return `${name}:${port}`
}

/** The static variables' part of `Picked`: what a request that lacks a variable falls back to. */
const pickStatics = (statics: Readonly<Record<string, string>>): Picked => ({
  method: statics.REQUEST_METHOD,
  requestUri: statics.REQUEST_URI,
  scriptName: statics.SCRIPT_NAME,
  pathInfo: statics.PATH_INFO,
  query: statics.QUERY_STRING,
  contentType: statics.CONTENT_TYPE,
  contentLength: undefined,
  https: statics.HTTPS,
  scheme: statics.REQUEST_SCHEME,
  serverName: statics.SERVER_NAME,
  serverPort: statics.SERVER_PORT,
  remoteAddr: statics.REMOTE_ADDR,
  serverProtocol: statics.SERVER_PROTOCOL
})

const staticsPicked = new WeakMap<Readonly<Record<string, string>>, Picked>()

/**
 * Maps an SCGI request's variables (as parsed, `[name, value, ...]`) over the static `environ`
 * to the HTTP request, or describes what is wrong. Only what the mapping needs is checked here
 * (the method and the URL); the typed environment is decoded when the app asks for it.
 *
 * @since 0.1.0
 */
export const mapRequest = (
  received: ReadonlyArray<string>,
  statics: Readonly<Record<string, string>>
): MappedRequest | string => {
  let defaults = staticsPicked.get(statics)
  if (defaults === undefined) {
    defaults = pickStatics(statics)
    staticsPicked.set(statics, defaults)
  }
  const picked: Picked = { ...defaults }
  const rawHeaders: Array<string> = []
  let hasHost = false
  for (let i = 0; i < received.length; i += 2) {
    const name = received[i]
    const value = received[i + 1]
    if (name.startsWith("HTTP_")) {
      // RFC 3875 §4.1.18: HTTP_CONTENT_TYPE and HTTP_CONTENT_LENGTH are the meta-variables' business.
      if (name === "HTTP_CONTENT_TYPE" || name === "HTTP_CONTENT_LENGTH") continue
      if (name === "HTTP_HOST") hasHost = true
      // A repeated header field (nginx before 1.23 repeats the variable) stays repeated here.
      rawHeaders.push(headerName(name), value)
      continue
    }
    switch (name) {
      case "REQUEST_METHOD":
        picked.method = value
        break
      case "REQUEST_URI":
        picked.requestUri = value
        break
      case "SCRIPT_NAME":
        picked.scriptName = value
        break
      case "PATH_INFO":
        picked.pathInfo = value
        break
      case "QUERY_STRING":
        picked.query = value
        break
      case "CONTENT_TYPE":
        picked.contentType = value
        break
      case "CONTENT_LENGTH":
        picked.contentLength = value
        break
      case "HTTPS":
        picked.https = value
        break
      case "REQUEST_SCHEME":
        picked.scheme = value
        break
      case "SERVER_NAME":
        picked.serverName = value
        break
      case "SERVER_PORT":
        picked.serverPort = value
        break
      case "REMOTE_ADDR":
        picked.remoteAddr = value
        break
      case "SERVER_PROTOCOL":
        picked.serverProtocol = value
        break
    }
  }
  const method = picked.method
  if (method === undefined) return "REQUEST_METHOD is missing"
  if (!isToken(method)) return `REQUEST_METHOD is not a method: ${JSON.stringify(method)}`
  const url = urlOf(picked)
  if (url === undefined) {
    return picked.requestUri !== undefined && picked.requestUri !== ""
      ? `REQUEST_URI is not a path: ${JSON.stringify(picked.requestUri)}`
      : `SCRIPT_NAME + PATH_INFO is not a path: ${JSON.stringify((picked.scriptName ?? "") + (picked.pathInfo ?? ""))}`
  }
  const contentType = picked.contentType
  if (contentType !== undefined && contentType !== "") rawHeaders.push("content-type", contentType)
  // The parser checked CONTENT_LENGTH (digits, no leading zero).
  const contentLength = picked.contentLength
  if (contentLength !== undefined && contentLength !== "0") rawHeaders.push("content-length", contentLength)
  const flag = picked.https
  const https = (flag !== undefined && truthy.has(flag.toLowerCase())) || picked.scheme?.toLowerCase() === "https"
  if (!hasHost) {
    const host = hostOf(picked, https)
    if (host !== undefined) rawHeaders.push("host", host)
  }
  const remote = picked.remoteAddr
  return {
    method,
    url,
    rawHeaders,
    remoteAddress: remote === undefined || remote === "" ? undefined : remote,
    protocol: https ? "https" : "http",
    protocolLabel: picked.serverProtocol ?? "HTTP/1.1",
    environ: new RequestEnviron(received, statics, https)
  }
}
