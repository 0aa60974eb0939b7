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
export { addressFreeCheck, addressInUse, endpointFreeCheck } from "./manager/Address.ts"
/**
 * This project's own server as a managed subprocess (`effect-appserver serve`), HTTP or SCGI,
 * with or without workers.
 *
 * @since 0.1.0
 */
export * as AppServerManager from "./manager/AppServerManager.ts"
export type { Endpoint } from "./manager/Endpoint.ts"
/**
 * The manager interface (`Manager.Manager`: start, stop, wait, health, readyWait) and managers
 * as scoped Layers (`Manager.layer`, `Manager.layerAs`).
 *
 * @since 0.1.0
 */
export * as Manager from "./manager/Manager.ts"
/**
 * A typed nginx configuration: listen address, file, redirect, HTTP proxy and SCGI mappings.
 *
 * @since 0.1.0
 */
export * as NginxConfig from "./manager/NginxConfig.ts"
/**
 * nginx as a managed process: config written and validated, started, health by `stub_status`,
 * `reload` on a changed configuration.
 *
 * @since 0.1.0
 */
export * as NginxManager from "./manager/NginxManager.ts"
/**
 * Health probes for managers: TCP, unix, HTTP, SCGI, log lines, any Effect; `all` / `any`.
 *
 * @since 0.1.0
 */
export * as Probe from "./manager/Probe.ts"
/**
 * A manager for any command (`ProcessManager.make(options)`), with a probe, a stop signal and
 * grace period, and an optional restart Schedule.
 *
 * @since 0.1.0
 */
export * as ProcessManager from "./manager/ProcessManager.ts"
/**
 * Readiness waiting: `ReadyWait.defaultSchedule`, `ExitStatus`.
 *
 * @since 0.1.0
 */
export * as ReadyWait from "./manager/ReadyWait.ts"
/**
 * The prefork pool: worker processes serving a module with either server (`Prefork.launch`,
 * `Prefork.layer`).
 *
 * @since 0.1.0
 */
export * as Prefork from "./prefork/Prefork.ts"
/**
 * Dropping root once bound: `resolveIdentity`, `dropPrivileges` (what `--user`/`--group` do).
 *
 * @since 0.1.0
 */
export * as Identity from "./process/Identity.ts"
/**
 * systemd's notify protocol (`Type=notify`): `fromEnvironment`, `serving`.
 *
 * @since 0.1.0
 */
export * as SystemdNotify from "./process/SystemdNotify.ts"
/**
 * The SCGI server (`ScgiServer.layer(options)`), for apps behind nginx, Apache or lighttpd.
 *
 * @since 0.1.0
 */
export * as ScgiServer from "./scgi/ScgiServer.ts"
export type { AccessLogFormat } from "./stats/AccessLog.ts"
/**
 * The server's own log: Effect's loggers to stderr, as `--log-format` chooses them.
 *
 * @since 0.1.0
 */
export * as Logs from "./stats/Logs.ts"
export {
  type ConnectionStateName,
  type RequestsOfKind,
  Stats,
  type StatsSnapshot,
  StatsSnapshotSchema,
  type TimeoutKind
} from "./stats/ServerStats.ts"
