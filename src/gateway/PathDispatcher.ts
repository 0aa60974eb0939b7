/**
 * Several Effect HTTP apps mounted at path prefixes, composed into one app (the role of cheroot's
 * `WSGIPathInfoDispatcher`).
 *
 * ```ts
 * const app = yield* PathDispatcher.make({ "/": home, "/blog": blog, "/api/v1": api })
 * ```
 *
 * - The longest matching prefix wins, and a prefix matches only at a segment boundary: `/blog`
 *   takes `/blog`, `/blog/`, `/blog/x` and `/blog?x=1`, never `/blogger`. `/` takes what no longer
 *   prefix takes; without it, an unmatched request fails with Effect's `RouteNotFound` (404).
 * - The mounted app sees its URL relative to the prefix (`/blog/x?q=1` becomes `/x?q=1`, `/blog`
 *   becomes `/`), as `request.url`; `request.originalUrl` stays the URL as received. The prefix
 *   (the role of WSGI's `SCRIPT_NAME`) is read with `PathDispatcher.mountPrefix`; nested
 *   dispatchers accumulate it (`/a` then `/b` gives `/a/b`).
 * - Matching is on the raw, percent-encoded path, segment by segment: `/blog%2Fx` is one segment
 *   and does not reach the app at `/blog`. WSGI compares the decoded `PATH_INFO` instead, which
 *   makes an encoded slash a boundary; that lets a client address an app through a path that the
 *   apps and proxies in front of it see as a single segment, so it is deliberately not done here.
 *
 * @since 0.1.0
 */
import { Context, Data, Effect } from "effect"
import { HttpServerError, RouteNotFound } from "effect/http/HttpServerError"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import type { HttpServerResponse } from "effect/http/HttpServerResponse"

/**
 * An Effect HTTP app: what `HttpServer.serve` takes, and what `HttpRouter.toHttpEffect` builds
 * from an `HttpRouter` layer.
 *
 * @since 0.1.0
 * @category models
 */
export type App<E = never, R = never> = Effect.Effect<HttpServerResponse, E, R>

/**
 * The mount table: path prefixes to apps.
 *
 * A record rather than a list of pairs because it reads as the routing table it is, like
 * cheroot's `{"/": root, "/blog": blog}`; because the longest prefix wins, the order of entries
 * never matters, which a list would suggest it does; and a literal cannot repeat a key (a compile
 * error), so the only duplicates left are prefixes that differ in spelling but not in meaning
 * (`/caf%c3%a9` and `/caf%C3%A9`), which `make` reports. Build one from pairs with
 * `Object.fromEntries` when the table is computed.
 *
 * @since 0.1.0
 * @category models
 */
export type Mounts = { readonly [prefix: string]: App<unknown, unknown> }

/**
 * What the composed app can fail with: the mounted apps' errors, and `HttpServerError`
 * (`RouteNotFound`, 404) unless a root app (`"/"`) takes every request the others do not.
 *
 * @since 0.1.0
 * @category models
 */
export type DispatcherError<M extends Mounts> =
  | Effect.Error<M[keyof M]>
  | (M extends { readonly "/": App<unknown, unknown> } ? never : HttpServerError)

/**
 * What the composed app requires: the request, and what the mounted apps require.
 *
 * @since 0.1.0
 * @category models
 */
export type DispatcherServices<M extends Mounts> = HttpServerRequest | Effect.Services<M[keyof M]>

/**
 * Why a prefix was refused:
 *
 * - `NotAbsolute`: it does not start with `/`.
 * - `QueryOrFragment`: it contains `?` or `#`; a prefix is matched against the path alone.
 * - `TrailingSlash`: it ends with `/` (only the root `/` may); `/blog` already takes `/blog/`.
 * - `EmptySegment`: it contains `//`.
 * - `DotSegment`: it has a `.` or `..` segment, which clients resolve before sending.
 * - `InvalidCharacter`: a character a URI path cannot contain unencoded (RFC 3986 §3.3 pchar:
 *   letters, digits, `-._~!$&'()*+,;=:@` and percent-encodings); write it percent-encoded, in
 *   UTF-8, as clients send it.
 * - `InvalidPercentEncoding`: a `%` not followed by two hex digits.
 * - `EncodedUnreserved`: a percent-encoded letter, digit or `-._~`, which clients send as is
 *   (RFC 3986 §2.3), so the prefix would never match.
 * - `Duplicate`: another prefix of the table means the same (hex digits of percent-encodings
 *   are case-insensitive, RFC 3986 §2.1).
 *
 * @since 0.1.0
 * @category errors
 */
export type InvalidMountReason =
  | "NotAbsolute"
  | "QueryOrFragment"
  | "TrailingSlash"
  | "EmptySegment"
  | "DotSegment"
  | "InvalidCharacter"
  | "InvalidPercentEncoding"
  | "EncodedUnreserved"
  | "Duplicate"

const describe: Record<InvalidMountReason, string> = {
  NotAbsolute: 'a prefix must start with "/"',
  QueryOrFragment: 'a prefix is a path: it cannot contain "?" or "#"',
  TrailingSlash: 'only the root prefix "/" may end with "/"',
  EmptySegment: 'a prefix cannot contain an empty segment ("//")',
  DotSegment: 'a prefix cannot contain a "." or ".." segment',
  InvalidCharacter: "a prefix may contain only URI path characters; percent-encode the others (UTF-8)",
  InvalidPercentEncoding: 'a "%" must be followed by two hex digits',
  EncodedUnreserved: "a percent-encoded letter, digit or -._~ is never sent encoded; write it as is",
  Duplicate: "another prefix of the table is the same path"
}

/**
 * A mount prefix `make` refused. It names the prefix as written and why.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidMount extends Data.TaggedError("InvalidMount")<{
  readonly prefix: string
  readonly reason: InvalidMountReason
}> {
  override get message(): string {
    return `invalid mount prefix ${JSON.stringify(this.prefix)}: ${describe[this.reason]}`
  }
}

/**
 * The path prefix the current app is mounted at, without a trailing slash: `""` when it is not
 * mounted or mounted at `/` (like WSGI's `SCRIPT_NAME`). Each dispatcher appends its prefix as
 * written in its table (hex digits of percent-encodings in upper case), not as received. Apps use
 * it to build links to themselves: `${prefix}/x`. A `Context.Reference` so that an app can read it
 * whether or not it is mounted, with nothing added to its requirements.
 *
 * @since 0.1.0
 * @category services
 */
export const MountPrefix: Context.Reference<string> = Context.Reference<string>(
  "effect-appserver/PathDispatcher/MountPrefix",
  { defaultValue: () => "" }
)

/**
 * The current app's mount prefix (see `MountPrefix`).
 *
 * @since 0.1.0
 * @category accessors
 */
export const mountPrefix: Effect.Effect<string> = Effect.service(MountPrefix)

/** RFC 3986 §3.3 pchar without pct-encoded: unreserved, sub-delims, ":" and "@". */
const PCHAR = (() => {
  const out = new Uint8Array(128)
  const allowed = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@"
  for (let i = 0; i < allowed.length; i++) out[allowed.charCodeAt(i)] = 1
  return out
})()

const UNRESERVED_PUNCTUATION = "-._~"

const hexValue = (c: number): number =>
  c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x41 && c <= 0x46 ? c - 55 : c >= 0x61 && c <= 0x66 ? c - 87 : -1

const isUnreserved = (byte: number): boolean =>
  (byte >= 0x30 && byte <= 0x39) ||
  (byte >= 0x41 && byte <= 0x5a) ||
  (byte >= 0x61 && byte <= 0x7a) ||
  UNRESERVED_PUNCTUATION.includes(String.fromCharCode(byte))

/**
 * Checks a prefix and returns its normal form (hex digits of percent-encodings in upper case,
 * RFC 3986 §6.2.2.1), or why it is refused.
 */
const normalise = (prefix: string): string | InvalidMountReason => {
  if (prefix.charCodeAt(0) !== 0x2f) return "NotAbsolute"
  if (prefix === "/") return prefix
  if (prefix.includes("?") || prefix.includes("#")) return "QueryOrFragment"
  if (prefix.endsWith("/")) return "TrailingSlash"
  if (prefix.includes("//")) return "EmptySegment"
  for (const segment of prefix.split("/")) if (segment === "." || segment === "..") return "DotSegment"
  let out = ""
  for (let i = 0; i < prefix.length; i++) {
    const c = prefix.charCodeAt(i)
    if (c === 0x2f || (c < 128 && PCHAR[c] === 1)) {
      out += prefix[i]
    } else if (c === 0x25) {
      const high = hexValue(prefix.charCodeAt(i + 1))
      const low = hexValue(prefix.charCodeAt(i + 2))
      if (high < 0 || low < 0) return "InvalidPercentEncoding"
      if (isUnreserved(high * 16 + low)) return "EncodedUnreserved"
      out += prefix.slice(i, i + 3).toUpperCase()
      i += 2
    } else {
      return "InvalidCharacter"
    }
  }
  return out
}

// A normal form starts with "/", a reason never does.
const isReason = (normalised: string): normalised is InvalidMountReason => normalised.charCodeAt(0) !== 0x2f

/** A mounted app, with what matching needs computed once. */
interface Mount {
  readonly prefix: string
  readonly app: App<unknown, unknown>
  /**
   * Positions of the prefix's percent-encoding hex letters (A-F), which match either case; `null`
   * when there are none, so that most prefixes take the `startsWith` fast path.
   */
  readonly hexLetters: Uint8Array | null
}

const hexLettersOf = (prefix: string): Uint8Array | null => {
  let mask: Uint8Array | null = null
  for (let i = prefix.indexOf("%"); i !== -1; i = prefix.indexOf("%", i + 3)) {
    for (let j = i + 1; j <= i + 2; j++) {
      const c = prefix.charCodeAt(j)
      if (c >= 0x41 && c <= 0x46) (mask ??= new Uint8Array(prefix.length))[j] = 1
    }
  }
  return mask
}

/** Whether `url` starts with the mount's prefix followed by the end of the URL, "/", "?" or "#". */
const matches = (url: string, mount: Mount): boolean => {
  const prefix = mount.prefix
  const length = prefix.length
  if (url.length < length) return false
  // The boundary first: it rules out most non-matching mounts with one comparison.
  if (url.length > length) {
    const next = url.charCodeAt(length)
    if (next !== 0x2f && next !== 0x3f && next !== 0x23) return false
  }
  const hexLetters = mount.hexLetters
  if (hexLetters === null) return url.startsWith(prefix)
  for (let i = 0; i < length; i++) {
    const expected = prefix.charCodeAt(i)
    const actual = url.charCodeAt(i)
    if (actual !== expected && !(hexLetters[i] === 1 && actual === expected + 0x20)) return false
  }
  return true
}

/** The URL the mounted app sees: what follows the prefix, always starting with "/". */
const relativeUrl = (url: string, length: number): string => {
  if (url.length === length) return "/"
  return url.charCodeAt(length) === 0x2f ? url.slice(length) : `/${url.slice(length)}`
}

/**
 * Composes the apps of a mount table into one app. Fails with `InvalidMount` for the first
 * prefix of the table that is not a valid mount point (see `InvalidMountReason`); otherwise the
 * composed app routes each request by the path of `request.url`:
 *
 * - the app of the longest prefix that matches at a segment boundary (the prefix followed by the
 *   end of the URL, `/`, `?` or `#`) runs with the request's URL made relative to the prefix
 *   (`request.modify({ url })`) and with the prefix appended to `MountPrefix`;
 * - else the root app (`"/"`), if any, runs with the request unchanged (including an
 *   asterisk-form `OPTIONS *`), so a table with only a root app is transparent;
 * - else the composed app fails with `HttpServerError` / `RouteNotFound`, as `HttpRouter` does
 *   for a path without a route, which Effect's error-to-response handling answers with 404.
 *
 * Percent-encodings are compared as written (their hex digits in either case), never decoded:
 * `/blog%2Fx` is a single segment, not `/blog/x`. Dot segments are not resolved, as no server of
 * this package resolves them: `/blog/../x` reaches the app at `/blog` as `/../x`.
 *
 * An `HttpRouter` is mounted through its app: `yield* HttpRouter.toHttpEffect(routes)` (in a
 * Scope, which its layers' resources live in). It routes on the relative URL.
 *
 * Construction is synchronous, so run it once when the server starts (`Layer.unwrap`, or
 * `Effect.runSync` at module level) rather than per request. Per request, the cost is a scan of
 * the prefixes, longest first, each rejected by a boundary check or one `startsWith`; there is no
 * regular expression and nothing is decoded.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <const M extends Mounts>(
  mounts: M
): Effect.Effect<App<DispatcherError<M>, DispatcherServices<M>>, InvalidMount> =>
  Effect.suspend(() => {
    const seen = new Set<string>()
    const prefixed: Array<Mount> = []
    let root: App<unknown, unknown> | undefined
    for (const [written, app] of Object.entries(mounts)) {
      const prefix = normalise(written)
      if (isReason(prefix)) return Effect.fail(new InvalidMount({ prefix: written, reason: prefix }))
      if (seen.has(prefix)) return Effect.fail(new InvalidMount({ prefix: written, reason: "Duplicate" }))
      seen.add(prefix)
      if (prefix === "/") root = app
      else prefixed.push({ prefix, app, hexLetters: hexLettersOf(prefix) })
    }
    // Longest first, so that the first match is the longest. Two prefixes of the same length
    // cannot both match one URL: each must be followed by a boundary at the same position.
    prefixed.sort((a, b) => b.prefix.length - a.prefix.length)
    return Effect.succeed(dispatcher(prefixed, root) as App<DispatcherError<M>, DispatcherServices<M>>)
  })

const dispatcher = (mounts: ReadonlyArray<Mount>, root: App<unknown, unknown> | undefined): App<unknown, unknown> =>
  Effect.contextWith((context: Context.Context<HttpServerRequest>) => {
    const request = Context.get(context, HttpServerRequest)
    const url = request.url
    for (let i = 0; i < mounts.length; i++) {
      const mount = mounts[i]
      if (!matches(url, mount)) continue
      const outer = Context.get(context, MountPrefix)
      return mount.app.pipe(
        Effect.provideService(HttpServerRequest, request.modify({ url: relativeUrl(url, mount.prefix.length) })),
        Effect.provideService(MountPrefix, outer + mount.prefix)
      )
    }
    if (root !== undefined) return root
    return Effect.fail(
      new HttpServerError({
        reason: new RouteNotFound({ request, description: "no mount prefix matches the path" })
      })
    )
  })
