/**
 * The server's own log (not the access log): Effect's loggers, written to standard error so that
 * standard output carries only what the server is asked to print there (its `listening on` line
 * and the access log).
 *
 * @since 0.1.0
 */
import { Layer, Logger, Schema } from "effect"

/**
 * How log entries are written: Effect's pretty logger (a terminal), one JSON object per line, or
 * logfmt (`key=value` pairs, for Loki, Heroku-style collectors).
 *
 * @since 0.1.0
 * @category models
 */
export const LogFormat = Schema.Literals(["pretty", "json", "logfmt"])

/**
 * @since 0.1.0
 * @category models
 */
export type LogFormat = typeof LogFormat.Type

/**
 * The loggers for a format, all to standard error, replacing the default one.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (format: LogFormat): Layer.Layer<never> => {
  const logger =
    format === "json"
      ? Logger.withConsoleError(Logger.formatJson)
      : format === "logfmt"
        ? Logger.withConsoleError(Logger.formatLogFmt)
        : Logger.consolePretty()
  return Layer.merge(Logger.layer([logger]), Layer.succeed(Logger.LogToStderr, true))
}
