/**
 * Server options as Schemas: one definition each, shared by the library and the command line, so
 * a bad value fails at startup with a message naming the option.
 *
 * @since 0.1.0
 */
import { Config, ConfigProvider, Effect, Schema, SchemaIssue } from "effect"
import { InvalidOptions } from "./errors.ts"

const int = (minimum: number, maximum: number) =>
  Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum, maximum }))

/** A field with a default and a description (shown by the command line's --help). */
const field = <S extends Schema.Top>(schema: S, value: S["Encoded"], description: string) =>
  schema.pipe(Schema.withDecodingDefault(Effect.succeed(value))).annotate({ description })

/**
 * Seconds, as options give them, in milliseconds.
 *
 * @since 0.1.0
 */
export const millis = (seconds: number): number => Math.round(seconds * 1000)

const noDelay = field(Schema.Boolean, true, "Disable Nagle's algorithm (TCP_NODELAY) so responses go out at once.")

const KiB = 1024
const MiB = 1024 * KiB

/**
 * Where to listen on TCP (shared by every server).
 *
 * @since 0.1.0
 * @category options
 */
export const ListenFields = {
  host: field(
    Schema.String.check(Schema.isNonEmpty()),
    "127.0.0.1",
    'Interface to bind: an IP address or a host name; "0.0.0.0" or "::" listen on all interfaces.'
  ),
  port: field(int(0, 65535), 8080, "TCP port; 0 picks a free ephemeral port (see the server's address)."),
  backlog: field(int(1, 65535), 511, "Length of the queue of connections not yet accepted (listen(2) backlog)."),
  ipv6Only: field(Schema.Boolean, false, 'With host "::", accept IPv6 only instead of both address families.'),
  path: Schema.optionalKey(
    Schema.String.check(Schema.isNonEmpty()).annotate({
      description: "Listen on this unix socket path instead of TCP; a stale socket file is replaced."
    })
  ),
  socketMode: Schema.optionalKey(
    int(0, 0o777).annotate({ description: "File mode of the unix socket, e.g. 0o660 (octal 660 on the command line)." })
  ),
  socketOwner: Schema.optionalKey(
    Schema.String.check(Schema.isNonEmpty()).annotate({
      description: "Owner of the unix socket (a user name or uid), set before the server accepts; needs root."
    })
  ),
  socketGroup: Schema.optionalKey(
    Schema.String.check(Schema.isNonEmpty()).annotate({
      description:
        "Group of the unix socket (a group name or gid), set before the server accepts: with --socket-mode 660, the front end's group (www-data for Debian's nginx) may connect."
    })
  ),
  fd: Schema.optionalKey(
    int(0, 65535).annotate({ description: "Serve on this inherited, already listening socket descriptor." })
  ),
  systemd: field(Schema.Boolean, false, "Serve on the socket systemd passes (LISTEN_FDS/LISTEN_PID socket activation).")
} as const

/** Seconds, 0 for none. */
const seconds = Schema.Number.check(Schema.isFinite(), Schema.isGreaterThanOrEqualTo(0))

/**
 * A TLS certificate and key, PEM-encoded.
 *
 * @since 0.1.0
 * @category options
 */
export const TlsOptions = Schema.Struct({
  /** The private key (PEM). */
  key: Schema.String.check(Schema.isNonEmpty()),
  /** The certificate chain (PEM). */
  cert: Schema.String.check(Schema.isNonEmpty()),
  /** CA certificates (PEM) that client certificates are checked against. */
  ca: Schema.optionalKey(Schema.String),
  /** Passphrase of an encrypted key. */
  passphrase: Schema.optionalKey(Schema.String),
  /** Ask clients for a certificate; its details are visible to the app. */
  requestCert: Schema.optionalKey(Schema.Boolean),
  /** With requestCert: refuse clients whose certificate does not verify against `ca`. */
  rejectUnauthorized: Schema.optionalKey(Schema.Boolean)
})

/**
 * Timeouts, connection limits, shutdown and logging (shared by every server).
 *
 * @since 0.1.0
 * @category options
 */
export const OperationFields = {
  headersTimeout: field(
    seconds,
    30,
    "Seconds for a request head to arrive once it starts (and for the first one on a new connection): 408 and close beyond it."
  ),
  requestTimeout: field(
    seconds,
    300,
    "Seconds for a request body to arrive once its head is in: 408 (or close, if the response began) beyond it."
  ),
  keepAliveTimeout: field(seconds, 5, "Seconds an idle keep-alive connection is kept before it is closed."),
  sendTimeout: field(
    seconds,
    60,
    "Seconds a client may take none of a response while more of it waits to be sent; beyond it the connection is closed and the request interrupted."
  ),
  handshakeTimeout: field(seconds, 10, "Seconds for a TLS handshake."),
  shutdownTimeout: field(
    seconds,
    30,
    "Seconds requests in progress get to finish when the server stops, before they are interrupted."
  ),
  stopDelay: field(
    seconds,
    0,
    "Seconds the server keeps serving as usual once told to stop (SIGTERM), answering 503 on healthPath meanwhile, before it drains: time for load balancers that poll the health path to take it out."
  ),
  healthPath: Schema.optionalKey(
    Schema.String.check(Schema.isPattern(/^\/[\x21-\x7e]*$/, { message: "a path starting with /" })).annotate({
      description:
        "A path the server answers itself, without the app: 200 while it serves, 503 once it is stopping (from the start of stopDelay), for load balancer health checks and readiness probes."
    })
  ),
  drainGrace: field(
    seconds,
    0,
    "Seconds idle and new connections are kept when the server stops: a request that arrives meanwhile is answered (with Connection: close) instead of its connection closing under it. 0 closes them at once."
  ),
  maxConnections: field(
    int(0, 10_000_000),
    0,
    "Open connections beyond which a new one is answered 503 and closed; 0 for no limit."
  ),
  maxConcurrentRequests: field(
    int(0, 10_000_000),
    0,
    "Requests run by the app at once; more wait up to requestQueueTimeout, then get 503. 0 for no limit."
  ),
  requestQueueTimeout: field(seconds, 10, "Seconds a request waits for a slot under maxConcurrentRequests."),
  accessLog: field(
    Schema.Literals(["off", "common", "combined", "json"]),
    "off",
    "One line per request, to standard output (or accessLogFile): Common or Combined Log Format (Apache, nginx), or one JSON object."
  ),
  accessLogFile: Schema.optionalKey(
    Schema.String.check(Schema.isNonEmpty()).annotate({
      description:
        "Append the access log to this file instead of standard output; SIGUSR1 reopens it (logrotate's postrotate, as for nginx)."
    })
  )
} as const

/**
 * Options of the HTTP/1.1 server.
 *
 * @since 0.1.0
 * @category options
 */
export const Http1ServerOptions = Schema.Struct({
  ...ListenFields,
  ...OperationFields,
  tls: Schema.optionalKey(TlsOptions.annotate({ description: "Serve HTTPS with this certificate and key." })),
  noDelay,
  maxRequestLineSize: field(int(64, MiB), 8 * KiB, "Longest request line in bytes (414 beyond it)."),
  maxHeaderSize: field(
    int(256, 16 * MiB),
    16 * KiB,
    "Largest header section in bytes (431 beyond it); also bounds trailers."
  ),
  maxHeaderCount: field(int(1, 100_000), 100, "Most header fields (431 beyond it); also bounds trailers."),
  maxBodySize: field(
    int(0, Number.MAX_SAFE_INTEGER),
    64 * MiB,
    "Largest request body in bytes (413; the app's body stream fails with MaxSizeExceeded)."
  ),
  maxDrainSize: field(
    int(0, Number.MAX_SAFE_INTEGER),
    256 * KiB,
    "Unread request body discarded after a response to keep the connection open; beyond it the connection closes."
  ),
  serverName: field(
    Schema.String.check(Schema.isPattern(/^[\x20-\x7e]*$/, { message: "printable ASCII only" })),
    "effect-appserver",
    "Value of the Server response header; empty to send none."
  ),
  websocketMaxMessageSize: field(
    int(125, Number.MAX_SAFE_INTEGER),
    64 * MiB,
    "Largest WebSocket message in bytes; a larger one closes the socket with 1009 (message too big)."
  ),
  websocketPingInterval: field(
    seconds,
    30,
    "Seconds between pings on each WebSocket; a peer that has not answered the previous ping is dropped. 0 for none."
  ),
  websocketCompression: field(
    Schema.Boolean,
    false,
    "Offer permessage-deflate compression (RFC 7692) to WebSocket clients that ask for it."
  )
})

/**
 * Options of the SCGI server: where to listen (port 4000 by default, the SCGI convention), the
 * operational fields that apply to one request per connection, and SCGI's own limits.
 *
 * @since 0.1.0
 * @category options
 */
export const ScgiServerOptions = Schema.Struct({
  ...ListenFields,
  port: field(int(0, 65535), 4000, "TCP port; 0 picks a free ephemeral port (see the server's address)."),
  headersTimeout: OperationFields.headersTimeout,
  requestTimeout: OperationFields.requestTimeout,
  sendTimeout: OperationFields.sendTimeout,
  shutdownTimeout: OperationFields.shutdownTimeout,
  stopDelay: OperationFields.stopDelay,
  healthPath: OperationFields.healthPath,
  drainGrace: OperationFields.drainGrace,
  maxConnections: OperationFields.maxConnections,
  maxConcurrentRequests: OperationFields.maxConcurrentRequests,
  requestQueueTimeout: OperationFields.requestQueueTimeout,
  accessLog: OperationFields.accessLog,
  accessLogFile: OperationFields.accessLogFile,
  noDelay,
  maxHeaderSize: field(int(16, 16 * MiB), 64 * KiB, "Largest SCGI header netstring in bytes (400 beyond it)."),
  maxBodySize: field(
    int(0, Number.MAX_SAFE_INTEGER),
    64 * MiB,
    "Largest request body in bytes (413 before the app runs: SCGI always declares the length)."
  ),
  environ: field(
    Schema.Record(Schema.String, Schema.String),
    {},
    "Variables every request's environment gets, under the front end's own (wsgitools' config)."
  )
})

/**
 * @since 0.1.0
 * @category options
 */
export type ScgiServerOptionsInput = typeof ScgiServerOptions.Encoded

/**
 * @since 0.1.0
 * @category options
 */
export type ScgiServerConfig = typeof ScgiServerOptions.Type

/**
 * What callers pass: every field optional.
 *
 * @since 0.1.0
 * @category options
 */
export type Http1ServerOptionsInput = typeof Http1ServerOptions.Encoded

/**
 * Decoded options with defaults applied.
 *
 * @since 0.1.0
 * @category options
 */
export type Http1ServerConfig = typeof Http1ServerOptions.Type

/** Splits a SchemaError message ("Expected ...\n  at ["port"]") into the option and what is wrong. */
const describe = (message: string): InvalidOptions => {
  const match = /^([\s\S]*?)\n\s*at \[(.*)\]\s*$/.exec(message)
  if (match === null) return new InvalidOptions({ option: "", detail: message })
  const option = match[2]
    .split(",")
    .map((part) => part.trim().replace(/^"|"$/g, ""))
    .join(".")
  return new InvalidOptions({ option, detail: match[1].trim() })
}

/**
 * Decodes options with `schema`, refusing unknown ones, as a typed `InvalidOptions` failure.
 *
 * @since 0.1.0
 */
export const decodeOptions = <S extends Schema.Decoder<unknown>>(
  schema: S,
  input: unknown
): Effect.Effect<S["Type"], InvalidOptions, S["DecodingServices"]> =>
  Schema.decodeUnknownEffect(schema)(input, { onExcessProperty: "error" }).pipe(
    Effect.mapError((error) => describe(error.message))
  )

/**
 * Reads a Config, remembering the last path it loaded from the provider: the variable a value
 * came from, which Config does not otherwise tell.
 */
const readRecording = <A>(
  config: Config.Config<A>
): Effect.Effect<
  { readonly value: A; readonly path: ReadonlyArray<string | number> | undefined },
  Config.ConfigError
> =>
  Effect.gen(function* () {
    const provider = yield* ConfigProvider.ConfigProvider
    let path: ReadonlyArray<string | number> | undefined
    const recording = ConfigProvider.make((at) => {
      path = at
      return provider.load(at)
    })
    const value = yield* config.parse(recording)
    return { value, path }
  })

/**
 * Options given as Effect Configs, as `NodeHttpServer.layerConfig` takes them: a Config for the
 * whole, or a record whose fields are Configs. Each field's value is decoded with the option's
 * own Schema, so a value the option refuses is a `ConfigError` naming the variable it was read
 * from (and the option); the result is then decoded whole, as `decodeOptions` does.
 *
 * @since 0.1.0
 */
export const optionsFromConfig = <Fields extends Schema.Struct.Fields>(
  schema: Schema.Struct<Fields>,
  wrapped: Config.Wrap<Schema.Struct<Fields>["Encoded"]>
): Effect.Effect<Schema.Struct<Fields>["Encoded"], Config.ConfigError> => {
  if (Config.isConfig(wrapped)) return wrapped as Config.Config<Schema.Struct<Fields>["Encoded"]>
  return Effect.gen(function* () {
    const out: Record<string, unknown> = {}
    for (const [key, field] of Object.entries(wrapped as Record<string, unknown>)) {
      if (!Config.isConfig(field)) {
        // A nested record of Configs (tls): decoded whole with the other options.
        out[key] = yield* Config.unwrap(field as Config.Wrap<unknown>)
        continue
      }
      const { value, path } = yield* readRecording(field)
      if (value === undefined) continue
      const fieldSchema = schema.fields[key] as Schema.Top | undefined
      if (fieldSchema === undefined) {
        out[key] = value
        continue
      }
      const decoded = yield* Effect.result(Schema.decodeUnknownEffect(fieldSchema as Schema.Decoder<unknown>)(value))
      if (decoded._tag === "Failure") {
        const at = path === undefined ? [key] : [...path]
        return yield* Effect.fail(
          new Config.ConfigError(
            new Schema.SchemaError(new SchemaIssue.Pointer(at, new SchemaIssue.Pointer([key], decoded.failure.issue)))
          )
        )
      }
      out[key] = value
    }
    return out as Schema.Struct<Fields>["Encoded"]
  })
}

/**
 * Who the server runs as: it binds first (port 80, a socket in a root-owned directory), then
 * becomes this user before it loads the app (with workers: the workers run as it). Times are not
 * involved; both need root to start with.
 *
 * @since 0.1.0
 * @category options
 */
export const IdentityFields = {
  user: Schema.optionalKey(
    Schema.String.check(Schema.isNonEmpty()).annotate({
      description:
        "Run the app as this user (a name or uid) and its primary group, without supplementary groups, once the server has bound its socket; needs root."
    })
  ),
  group: Schema.optionalKey(
    Schema.String.check(Schema.isNonEmpty()).annotate({
      description: "Run the app with this group (a name or gid) instead of the user's own; needs root."
    })
  )
} as const

/**
 * @since 0.1.0
 * @category options
 */
export const IdentityOptions = Schema.Struct(IdentityFields)

/**
 * Where the command line serves metrics for Prometheus (`GET /metrics`), apart from the app.
 *
 * @since 0.1.0
 * @category options
 */
export const MetricsFields = {
  metricsPort: Schema.optionalKey(
    int(0, 65535).annotate({
      description:
        "Serve the metrics (the server's, every worker's with workers, the app's) for Prometheus at http://METRICS-HOST:PORT/metrics; none without it."
    })
  ),
  metricsHost: field(
    Schema.String.check(Schema.isNonEmpty()),
    "127.0.0.1",
    "Interface of the metrics endpoint (keep it private: the figures describe the service)."
  )
} as const

/**
 * @since 0.1.0
 * @category options
 */
export const MetricsOptions = Schema.Struct(MetricsFields)

/**
 * The prefork pool's own options (workers, recycling, timeouts, dispatch), shared by
 * `Prefork.layer` and the command line's flags. Times are seconds, 0 for none.
 *
 * @since 0.1.0
 * @category options
 */
export const PreforkFields = {
  workers: Schema.optionalKey(
    int(1, 1024).annotate({ description: "Worker processes: sets both minWorkers and maxWorkers." })
  ),
  minWorkers: Schema.optionalKey(
    int(1, 1024).annotate({ description: "Workers always running (default 1, or workers)." })
  ),
  maxWorkers: Schema.optionalKey(
    int(1, 1024).annotate({
      description: "Most workers: while every worker is busy, one more is started up to this many (default minWorkers)."
    })
  ),
  maxRequests: field(
    int(0, Number.MAX_SAFE_INTEGER),
    0,
    "Requests after which a worker retires (its replacement is ready first); 0 for never."
  ),
  maxRequestsJitter: field(
    int(0, Number.MAX_SAFE_INTEGER),
    0,
    "Up to this many requests more, chosen at random per worker, so workers do not retire together."
  ),
  maxWorkerAge: field(
    seconds,
    0,
    "Seconds after which a worker retires (its replacement is ready first); 0 for never."
  ),
  workerConcurrency: field(
    int(0, 10_000_000),
    0,
    "Requests a worker runs at once; at this many it counts as busy. 1 isolates requests as a forking server does; 0 for no limit."
  ),
  workerBusyUtilization: field(
    Schema.Number.check(Schema.isBetween({ minimum: 0, maximum: 1 })),
    0.9,
    "A worker whose event loop was busy this fraction of the last second (event-loop utilisation, 0-1) counts as busy, so the pool grows; 0 for never."
  ),
  workerTimeout: field(
    seconds,
    30,
    "Seconds a worker may go without a heartbeat (a hung or spinning app) before it is killed and replaced; 0 for never."
  ),
  idleWorkerTimeout: field(seconds, 60, "Seconds an extra worker (beyond minWorkers) may stay idle before it retires."),
  bootTimeout: field(
    seconds,
    30,
    "Seconds a new worker has to load the module and start serving; longer counts as a failed boot."
  ),
  dispatch: field(
    Schema.Literals(["shared", "primary"]),
    "shared",
    "shared: workers accept from the listening socket they inherit (the primary spends nothing per connection). primary: the primary accepts and hands each connection to the worker with the fewest connections that has room; with none, it waits up to requestQueueTimeout (at most backlog of them), then gets 503."
  )
} as const

/**
 * @since 0.1.0
 * @category options
 */
export const PreforkPoolOptions = Schema.Struct(PreforkFields)

/**
 * @since 0.1.0
 * @category options
 */
export type PreforkPoolOptionsInput = typeof PreforkPoolOptions.Encoded

/**
 * @since 0.1.0
 * @category options
 */
export type PreforkPoolConfig = typeof PreforkPoolOptions.Type
