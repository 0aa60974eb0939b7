/**
 * Typed failures shared by the servers.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * A request body went over the configured limit. It fails the application's body stream (wrapped
 * in Effect's `RequestParseError` with reason `BodyTooLarge`, which answers 413).
 *
 * @since 0.1.0
 * @category errors
 */
export class MaxSizeExceeded extends Schema.TaggedError<MaxSizeExceeded>()("MaxSizeExceeded", {
  /** The limit in bytes. */
  limit: Schema.Number
}) {
  override get message(): string {
    return `request body exceeds the limit of ${this.limit} bytes`
  }
}

/**
 * The connection ended before the request body was complete.
 *
 * @since 0.1.0
 * @category errors
 */
export class IncompleteBody extends Schema.TaggedError<IncompleteBody>()("IncompleteBody", {
  received: Schema.Number
}) {
  override get message(): string {
    return `connection closed after ${this.received} bytes of an incomplete request body`
  }
}

/**
 * The address is already bound by another socket (EADDRINUSE).
 *
 * @since 0.1.0
 * @category errors
 */
export class AddressInUse extends Schema.TaggedError<AddressInUse>()("AddressInUse", {
  address: Schema.String
}) {
  override get message(): string {
    return `address already in use: ${this.address}`
  }
}

/**
 * Binding needs a privilege the process lacks (EACCES, EPERM: e.g. a port below 1024).
 *
 * @since 0.1.0
 * @category errors
 */
export class PermissionDenied extends Schema.TaggedError<PermissionDenied>()("PermissionDenied", {
  address: Schema.String
}) {
  override get message(): string {
    return `permission denied binding ${this.address}`
  }
}

/**
 * The address cannot be bound here: not an address of this host, an unknown host name, or an
 * invalid address (EADDRNOTAVAIL, ENOTFOUND, EINVAL, ...).
 *
 * @since 0.1.0
 * @category errors
 */
export class BadAddress extends Schema.TaggedError<BadAddress>()("BadAddress", {
  address: Schema.String,
  code: Schema.String
}) {
  override get message(): string {
    return `cannot bind ${this.address}: ${this.code}`
  }
}

/**
 * Any failure to bind the listening socket.
 *
 * @since 0.1.0
 * @category errors
 */
export type BindError = AddressInUse | PermissionDenied | BadAddress

/**
 * An option failed validation at startup. The message names the option and what is wrong.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  /** The option's name (a dotted path for nested options), empty when not known. */
  option: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return this.option === "" ? `invalid options: ${this.detail}` : `invalid option ${this.option}: ${this.detail}`
  }
}

/**
 * The request body did not arrive within `requestTimeout`. It fails the application's body
 * stream; the client gets 408 if no response has begun, and the connection closes.
 *
 * @since 0.1.0
 * @category errors
 */
export class BodyTimeout extends Schema.TaggedError<BodyTimeout>()("BodyTimeout", {
  /** The timeout in seconds. */
  timeout: Schema.Number
}) {
  override get message(): string {
    return `request body not received within ${this.timeout} s`
  }
}

/**
 * The app asked to switch protocols (`request.upgrade`) on a server that cannot: SCGI, where the
 * front end owns the client's connection. The cause of the `HttpServerError` the upgrade fails with.
 *
 * @since 0.1.0
 * @category errors
 */
export class UpgradeUnavailable extends Schema.TaggedError<UpgradeUnavailable>()("UpgradeUnavailable", {
  protocol: Schema.Literal("scgi")
}) {
  override get message(): string {
    return `connection upgrades are not possible over ${this.protocol.toUpperCase()}`
  }
}

/**
 * A worker or a managed process failed: it could not be spawned, exited early, was not ready in
 * time, failed its health check, or its address was taken. Carries the name of what failed, the
 * reason, what it said last on stderr, and the underlying cause. The prefork pool halts with it
 * when workers keep failing to boot; managers fail with it.
 *
 * @since 0.1.0
 * @category errors
 */
export class WorkerError extends Schema.TaggedError<WorkerError>()("WorkerError", {
  /** What failed: a worker ("worker 3 (pid 1234)") or a manager's name. */
  name: Schema.String,
  reason: Schema.Literals([
    "SpawnFailed",
    "BootFailed",
    "ExitedEarly",
    "NotReady",
    "Unhealthy",
    "AddressInUse",
    /** A manager's restart policy gave up on a process that kept exiting. */
    "RestartLimit",
    /** A manager was asked about its process before starting one. */
    "NotStarted",
    /** A configuration the managed program refused (`nginx -t`, or nginx applying a reload). */
    "InvalidConfig",
    /** Whether an address is free could not be told: its connect failed otherwise than refused. */
    "AddressCheckFailed",
    /** A stopped process whose exit was never seen: its status is unknown. */
    "ExitUnknown"
  ]),
  /** What happened, for people. */
  detail: Schema.String,
  /** The last lines it wrote to stderr, "" when none. */
  stderr: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {
  override get message(): string {
    const tail = this.stderr === "" ? "" : `\n--- last stderr of ${this.name} ---\n${this.stderr}`
    return `${this.name}: ${this.detail}${tail}`
  }
}
