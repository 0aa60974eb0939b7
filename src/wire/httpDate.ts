/**
 * The Date header value (RFC 9110 §6.6.1), cached and reformatted at most once per second.
 *
 * @since 0.1.0
 */

let cachedDate = ""
let dateTimer: ReturnType<typeof setTimeout> | undefined

/** Reformats the date now and again at the start of the next second. */
const refreshDate = (): void => {
  const now = Date.now()
  cachedDate = new Date(now).toUTCString()
  dateTimer = setTimeout(refreshDate, 1000 - (now % 1000))
  // The timer must never keep the process alive.
  dateTimer.unref()
}

/**
 * The current time as an IMF-fixdate (RFC 9110 §5.6.7). It is formatted once per second, by a
 * timer aligned to the second, so a response costs no clock read or formatting.
 *
 * @since 0.1.0
 */
export const httpDate = (): string => {
  if (dateTimer === undefined) refreshDate()
  return cachedDate
}
