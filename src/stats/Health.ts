/**
 * Whether a server is going away: what its health path answers (`healthPath`: 200 while it
 * serves, 503 from the moment its graceful stop begins), so that a load balancer stops sending
 * it traffic before its connections close.
 *
 * @since 0.1.0
 */
import { Context } from "effect"

/**
 * A server's health: `draining` once it is stopping.
 *
 * @since 0.1.0
 * @category models
 */
export class Health {
  draining = false
}

/**
 * The health a server reports, when something other than the server's own stop decides it: a
 * prefork worker reports the pool's (its own retirement is not the pool going away). Undefined:
 * the server's own stop sets it.
 *
 * @since 0.1.0
 * @category references
 */
export const ServerHealth = Context.Reference<Health | undefined>("effect-appserver/ServerHealth", {
  defaultValue: () => undefined
})
