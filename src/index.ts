/**
 * effect-appserver: application servers for Effect HTTP apps.
 *
 * @since 0.1.0
 */

/**
 * What `effect-appserver serve` can run, for modules to check with `satisfies`: the command cannot
 * see an app's requirements at run time, TypeScript can.
 *
 * @since 0.1.0
 */
export type { ServableApp, ServableRoutes, ServerServices } from "./cli/serve.ts"
export {
  AddressInUse,
  BadAddress,
  type BindError,
  BodyTimeout,
  IncompleteBody,
  InvalidOptions,
  MaxSizeExceeded,
  PermissionDenied,
  UpgradeUnavailable,
  WorkerError
} from "./errors.ts"
/**
 * Several apps mounted at path prefixes as one app (`PathDispatcher.make({ "/": root, "/blog": blog })`).
 *
 * @since 0.1.0
 */
export * as PathDispatcher from "./gateway/PathDispatcher.ts"
export { rawHeaders, tlsInfo } from "./gateway/rawHeaders.ts"
/**
 * The HTTP/1.1 server (`Http1Server.layer(options)`).
 *
 * @since 0.1.0
 */
export * as Http1Server from "./http/Http1Server.ts"
export { HttpProtocolError } from "./http/HttpProtocolError.ts"
export type { TlsInfo } from "./listen/Tls.ts"
/**
 * The prefork pool: worker processes serving a module with either server (`Prefork.launch`,
 * `Prefork.layer`).
 *
 * @since 0.1.0
 */
export * as Prefork from "./prefork/Prefork.ts"
/**
 * The SCGI server (`ScgiServer.layer(options)`), for apps behind nginx, Apache or lighttpd.
 *
 * @since 0.1.0
 */
export * as ScgiServer from "./scgi/ScgiServer.ts"
export type { AccessLogFormat } from "./stats/AccessLog.ts"
export { Stats, type StatsSnapshot, type TimeoutKind } from "./stats/ServerStats.ts"
