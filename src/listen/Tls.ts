/**
 * TLS for the servers (the role of cheroot's `ssl_adapter`): the handshake of each connection
 * runs in that connection's fiber, after the TCP accept, so a slow or failing handshake never
 * holds up accepting others (cheroot#748). A plain-HTTP request on the TLS port is answered in
 * plain text.
 *
 * @since 0.1.0
 */

import type * as Net from "node:net"
import * as Tls from "node:tls"
import { Data, Effect } from "effect"
import { InvalidOptions } from "../errors.ts"
import { httpDate } from "../wire/httpDate.ts"

/**
 * TLS settings as the servers use them.
 *
 * @since 0.1.0
 * @category models
 */
export interface TlsSettings {
  readonly key: string
  readonly cert: string
  readonly ca?: string | undefined
  readonly passphrase?: string | undefined
  readonly requestCert?: boolean | undefined
  readonly rejectUnauthorized?: boolean | undefined
}

/**
 * A connection that did not become a TLS session.
 *
 * @since 0.1.0
 * @category errors
 */
export class HandshakeFailed extends Data.TaggedError("HandshakeFailed")<{
  readonly reason: "plain-http" | "not-tls" | "closed" | "tls-error"
  readonly cause?: unknown
}> {}

/**
 * Builds the secure context once, at startup: a bad key or certificate is an `InvalidOptions`
 * naming `tls`, not a failure of every connection.
 *
 * @since 0.1.0
 */
export const secureContext = (settings: TlsSettings): Effect.Effect<Tls.SecureContext, InvalidOptions> =>
  Effect.try({
    try: () =>
      Tls.createSecureContext({
        key: settings.key,
        cert: settings.cert,
        ...(settings.ca === undefined ? {} : { ca: settings.ca }),
        ...(settings.passphrase === undefined ? {} : { passphrase: settings.passphrase })
      }),
    catch: (error) =>
      new InvalidOptions({ option: "tls", detail: error instanceof Error ? error.message : String(error) })
  })

/** RFC 8446 §5.1: a TLS record starts with its content type; a handshake is 22. */
const handshakeRecord = 0x16

const plainHttpAnswer = (): string => {
  const body = "This port speaks HTTPS: use an https:// URL.\n"
  return (
    "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n" +
    `content-length: ${body.length}\r\nconnection: close\r\ndate: ${httpDate()}\r\n\r\n${body}`
  )
}

/** The verification result as Node's TLS handle keeps it: null when the peer certificate verified. */
interface VerifyingHandle {
  readonly verifyError?: () => (Error & { readonly code?: string }) | null | undefined
}

/**
 * Checks the client certificate as `tls.Server` does for the sockets it accepts
 * (`onServerSocketSecure`): Node does not for a `TLSSocket` made by hand, which would leave
 * `authorized` false for every client and `rejectUnauthorized` unenforced. Sets `authorized` and
 * `authorizationError` (the verification error's code, as Node does); false when not verified.
 */
const verifyPeer = (secure: Tls.TLSSocket): boolean => {
  const handle = (secure as unknown as { readonly ssl?: VerifyingHandle | null }).ssl
  const error: ReturnType<NonNullable<VerifyingHandle["verifyError"]>> =
    typeof handle?.verifyError === "function"
      ? handle.verifyError()
      : new Error("the client certificate could not be verified")
  const result = secure as unknown as { authorized: boolean; authorizationError: unknown }
  if (error === null || error === undefined) {
    result.authorized = true
    return true
  }
  result.authorized = false
  result.authorizationError = error.code ?? error.message
  return false
}

/**
 * Turns an accepted TCP socket into a TLS session. The first bytes decide: a TLS handshake record
 * goes on to the handshake (ALPN `http/1.1`); something that looks like an HTTP request is
 * answered `400` in plain text; anything else is dropped.
 *
 * @since 0.1.0
 */
export const handshake = (
  socket: Net.Socket,
  context: Tls.SecureContext,
  settings: TlsSettings
): Effect.Effect<Tls.TLSSocket, HandshakeFailed> =>
  Effect.callback<Tls.TLSSocket, HandshakeFailed>((resume) => {
    let tlsSocket: Tls.TLSSocket | undefined
    const onClose = () => resume(Effect.fail(new HandshakeFailed({ reason: "closed" })))
    const onError = () => {}
    socket.on("error", onError)
    socket.once("close", onClose)
    socket.once("data", (first: Buffer) => {
      socket.pause()
      if (first[0] !== handshakeRecord) {
        socket.off("close", onClose)
        const looksLikeHttp = /^[A-Z]+ /.test(first.toString("latin1", 0, Math.min(first.length, 16)))
        if (looksLikeHttp) {
          socket.resume()
          socket.end(plainHttpAnswer())
          setTimeout(() => socket.destroy(), 2_000).unref()
        } else {
          socket.destroy()
        }
        resume(Effect.fail(new HandshakeFailed({ reason: looksLikeHttp ? "plain-http" : "not-tls" })))
        return
      }
      // Put the bytes back: the TLS socket takes what is buffered on the TCP socket first.
      socket.unshift(first)
      const secure = new Tls.TLSSocket(socket, {
        isServer: true,
        secureContext: context,
        ALPNProtocols: ["http/1.1"],
        requestCert: settings.requestCert ?? false,
        rejectUnauthorized: settings.rejectUnauthorized ?? false
      })
      tlsSocket = secure
      secure.on("error", onError)
      secure.once("secure", () => {
        socket.off("close", onClose)
        secure.off("error", onError)
        if (settings.requestCert === true && !verifyPeer(secure) && settings.rejectUnauthorized === true) {
          secure.destroy()
          resume(Effect.fail(new HandshakeFailed({ reason: "tls-error", cause: secure.authorizationError })))
          return
        }
        resume(Effect.succeed(secure))
      })
      secure.once("error", (cause) => resume(Effect.fail(new HandshakeFailed({ reason: "tls-error", cause }))))
    })
    socket.resume()
    // Interrupted (handshake timeout, server stopping): drop the connection.
    return Effect.sync(() => {
      tlsSocket?.destroy()
      socket.destroy()
    })
  })

/**
 * What the app can see of a TLS session.
 *
 * @since 0.1.0
 * @category models
 */
export interface TlsInfo {
  /** "TLSv1.3", "TLSv1.2", ... */
  readonly protocol: string | null
  readonly cipher: string
  readonly alpnProtocol: string | false | null
  /** Whether the client's certificate verified against the configured CA. */
  readonly authorized: boolean
  readonly authorizationError: string | undefined
  /** The client's certificate, when one was asked for and sent. */
  readonly peerCertificate: Tls.PeerCertificate | undefined
}

/**
 * Reads the TLS details of a session.
 *
 * @since 0.1.0
 */
export const tlsInfoOf = (socket: Tls.TLSSocket): TlsInfo => {
  const peer = socket.getPeerCertificate()
  const error = socket.authorizationError
  return {
    protocol: socket.getProtocol(),
    cipher: socket.getCipher().name,
    alpnProtocol: socket.alpnProtocol,
    authorized: socket.authorized,
    authorizationError: error === null || error === undefined ? undefined : String(error),
    peerCertificate: peer !== null && Object.keys(peer).length > 0 ? peer : undefined
  }
}
