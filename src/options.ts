/**
 * Server options as Schemas: one definition each, shared by the library and the command line, so
 * a bad value fails at startup with a message naming the option.
 *
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"
import { InvalidOptions } from "./errors.ts"

const int = (minimum: number, maximum: number) =>
  Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum, maximum }))

/** A field with a default and a description (shown by the command line's --help). */
const field = <S extends Schema.Top>(schema: S, value: S["Encoded"], description: string) =>
  schema.pipe(Schema.withDecodingDefault(Effect.succeed(value))).annotate({ description })

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
  ipv6Only: field(Schema.Boolean, false, 'With host "::", accept IPv6 only instead of both address families.')
} as const

/**
 * Options of the HTTP/1.1 server.
 *
 * @since 0.1.0
 * @category options
 */
export const Http1ServerOptions = Schema.Struct({
  ...ListenFields,
  noDelay: field(Schema.Boolean, true, "Disable Nagle's algorithm (TCP_NODELAY) so responses go out at once."),
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
  )
})

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
