/**
 * Metrics read from counters kept elsewhere: registered with hooks that read the figure when
 * metrics are read (a scrape), so the hot path updates no metric. Shared by the server's
 * statistics and the prefork pool's.
 *
 * @since 0.1.0
 */
import { type Context, Metric } from "effect"

/**
 * Hooks that only read: the metric's value is `get()` whenever it is read.
 *
 * @since 0.1.0
 */
export const readOnly = <S>(get: () => S): Metric.Metric.Hooks<never, S> => ({
  get,
  update: () => {},
  modify: () => {}
})

/**
 * A monotonic counter whose value is `read()`, in the registry of `context`.
 *
 * @since 0.1.0
 */
export const registerCounter = (
  context: Context.Context<never>,
  name: string,
  description: string,
  attributes: Readonly<Record<string, string>>,
  read: () => number
): Metric.Registration =>
  Metric.registerUnsafe(
    Metric.counter(name, { description, incremental: true, attributes }),
    context,
    readOnly(() => ({ count: read(), incremental: true }))
  )

/**
 * A gauge whose value is `read()`, in the registry of `context`.
 *
 * @since 0.1.0
 */
export const registerGauge = (
  context: Context.Context<never>,
  name: string,
  description: string,
  attributes: Readonly<Record<string, string>>,
  read: () => number
): Metric.Registration =>
  Metric.registerUnsafe(
    Metric.gauge(name, { description, attributes }),
    context,
    readOnly(() => ({ value: read() }))
  )
