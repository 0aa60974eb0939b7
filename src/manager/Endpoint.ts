/**
 * Where a manager's probes and address checks connect: a TCP host and port, or a unix socket
 * path; and how such an address is written in messages and reached by a client.
 *
 * @since 0.1.0
 */
import { formatHostPort } from "../listen/Listener.ts"

/**
 * Where to connect: a TCP host and port, or a unix socket path.
 *
 * @since 0.1.0
 * @category models
 */
export type Endpoint = { readonly host: string; readonly port: number } | { readonly path: string }

/**
 * An endpoint for messages (and nginx's `server` lines): "127.0.0.1:8080", "[::1]:8080",
 * "unix:/run/app.sock".
 *
 * @since 0.1.0
 * @category formatting
 */
export const describeEndpoint = (endpoint: Endpoint): string =>
  "path" in endpoint ? `unix:${endpoint.path}` : formatHostPort(endpoint.host, endpoint.port)

/**
 * Where a client reaches a server bound to `host`: the loopback address for a wildcard
 * ("0.0.0.0", "::"), the host itself otherwise.
 *
 * @since 0.1.0
 * @category addresses
 */
export const clientHost = (host: string): string => (host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host)
