/**
 * The CGI environment of an SCGI request: how its variables map to the HTTP request the
 * application sees, and the `ScgiEnviron` service that gives the application the whole environment.
 *
 * @since 0.1.0
 */
import { Context, Effect, type Exit, Schema } from "effect"
import { isToken } from "../wire/chars.ts"
import { isFieldValue, isValidAuthority } from "../wire/fields.ts"

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
  /**
   * Every variable: the request's, over the server's static `environ` option, as received. Only
   * those that make the request are checked (see `mapRequest`): reading the others is the app's
   * choice, and so is checking them.
   */
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

/**
 * `HTTP_X_FOO` → `x-foo` (RFC 3875 §4.1.18 in reverse), or undefined when the result is not a
 * field name: RFC 9110 §5.1, a field name is a token. Only valid names are remembered, so the
 * check runs once per name.
 */
const headerName = (variable: string): string | undefined => {
  const known = headerNames.get(variable)
  if (known !== undefined) return known
  const name = variable.slice(5).toLowerCase().replaceAll("_", "-")
  if (!isToken(name)) return undefined
  if (headerNames.size < 512) headerNames.set(variable, name)
  return name
}

/**
 * Whether `text` holds only visible characters, VCHAR and obs-text (RFC 5234 Appendix B.1, RFC 9110
 * §5.5): no control (HTAB included), no SP, no DEL. The rule for the variables that become the
 * request target or go into the access log as they are; see `mapRequest`.
 */
const isVisible = (text: string): boolean => {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c <= 0x20 || c === 0x7f) return false
  }
  return true
}

/**
 * The Host a request without HTTP_HOST gets: SERVER_NAME, with SERVER_PORT unless it is the
 * scheme's. None when that is not a valid authority (RFC 9110 §7.2, RFC 3986 §3.2.2), as none
 * when SERVER_NAME is absent: the client sent no Host, and a request without one is not refused
 * (HTTP/1.0, RFC 9112 §3.2); SERVER_NAME is the front end's configuration, not the client's, and
 * nginx's `$server_name` is the first `server_name`, which may be a regex (`~^(.+)\.example$`).
 */
const hostOf = (picked: Picked, https: boolean): string | undefined => {
  const name = picked.serverName
  if (name === undefined || name === "") return undefined
  const port = picked.serverPort
  const host =
    port === undefined || !/^[0-9]{1,5}$/.test(port) || port === (https ? "443" : "80") ? name : `${name}:${port}`
  return isValidAuthority(host) ? host : undefined
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
 * to the HTTP request, or describes what is wrong (naming the variable, never echoing a refused
 * value's bytes). What goes into the request, and so reaches the app and the access log, is
 * checked as the HTTP/1.1 parser checks the same parts of a request (the target less strictly,
 * see below), so the bytes Http1Server answers with 400 are answered 400 here too:
 *
 * - HTTP_* names: RFC 9110 §5.1, a field name is a token.
 * - HTTP_* values and CONTENT_TYPE: RFC 9110 §5.5 field-value (HTAB, SP, VCHAR, obs-text); CR,
 *   LF, NUL, the other controls and DEL are refused.
 * - HTTP_HOST: RFC 9112 §3.2, a server answers 400 to more than one Host field line or a Host
 *   that is not a valid authority (RFC 9110 §7.2, RFC 3986 §3.2.2).
 * - REQUEST_URI, or QUERY_STRING when the URL is built without REQUEST_URI: visible characters
 *   only (no control, SP or DEL). RFC 9112 §3.2 and RFC 3986 §2 have none of these in a
 *   request-target, and nginx (since 1.21.1) refuses them in the request line itself, so a front
 *   end that behaves never sends them. The HTTP parser's stricter TARGET table is not used: nginx
 *   passes bytes above 0x7e (UTF-8 paths) and `"`, `<`, `>` in `$request_uri` as the client sent
 *   them, and refusing those would turn requests the front end accepted, and that apps serve
 *   today, into 400s. What is refused is what could split a line the app writes (a Location
 *   echoing the URL) or forge one in the access log.
 *   SCRIPT_NAME and PATH_INFO need no check: they are re-encoded (`encodePath`).
 * - REMOTE_ADDR and SERVER_PROTOCOL: visible characters only. An address (RFC 3875 §4.1.8; nginx
 *   sends `unix:` for unix-socket clients, so it is not parsed as an IP) and a protocol version
 *   (RFC 3875 §4.1.16, a token "/" digits) hold neither controls nor SP, and both are written into
 *   the access log, REMOTE_ADDR unquoted as its first field (log injection).
 *
 * The other variables reach the app only through `ScgiEnviron`, raw. The typed environment is
 * decoded when the app asks for it.
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
      const field = headerName(name)
      if (field === undefined) return "invalid HTTP_* variable name"
      if (!isFieldValue(value)) return `invalid character in ${name}`
      // RFC 3875 §4.1.18: HTTP_CONTENT_TYPE and HTTP_CONTENT_LENGTH are the meta-variables' business.
      if (name === "HTTP_CONTENT_TYPE" || name === "HTTP_CONTENT_LENGTH") continue
      if (name === "HTTP_HOST") {
        if (hasHost) return "HTTP_HOST is repeated"
        if (!isValidAuthority(value)) return "invalid HTTP_HOST"
        hasHost = true
      }
      // A repeated header field (nginx before 1.23 repeats the variable) stays repeated here.
      rawHeaders.push(field, value)
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
  const uri = picked.requestUri
  if (uri !== undefined && uri !== "") {
    if (!isVisible(uri)) return "invalid character in REQUEST_URI"
  } else if (picked.query !== undefined && !isVisible(picked.query)) {
    return "invalid character in QUERY_STRING"
  }
  const contentType = picked.contentType
  if (contentType !== undefined && !isFieldValue(contentType)) return "invalid character in CONTENT_TYPE"
  const remote = picked.remoteAddr
  if (remote !== undefined && !isVisible(remote)) return "invalid character in REMOTE_ADDR"
  const protocolLabel = picked.serverProtocol
  if (protocolLabel !== undefined && !isVisible(protocolLabel)) return "invalid character in SERVER_PROTOCOL"
  const url = urlOf(picked)
  if (url === undefined) {
    return picked.requestUri !== undefined && picked.requestUri !== ""
      ? `REQUEST_URI is not a path: ${JSON.stringify(picked.requestUri)}`
      : `SCRIPT_NAME + PATH_INFO is not a path: ${JSON.stringify((picked.scriptName ?? "") + (picked.pathInfo ?? ""))}`
  }
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
  return {
    method,
    url,
    rawHeaders,
    remoteAddress: remote === undefined || remote === "" ? undefined : remote,
    protocol: https ? "https" : "http",
    protocolLabel: protocolLabel ?? "HTTP/1.1",
    environ: new RequestEnviron(received, statics, https)
  }
}
