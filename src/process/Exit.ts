/**
 * How a process ended, shared by the prefork pool's workers and the managers' processes.
 *
 * @since 0.1.0
 */

/**
 * How a process ended: its exit code, or the signal that killed it.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExitStatus {
  readonly code: number | null
  readonly signal: string | null
}

/**
 * Describes an exit for logs and errors: "exit code 3", "signal SIGKILL".
 *
 * @since 0.1.0
 * @category formatting
 */
export const describeExitStatus = (status: ExitStatus): string =>
  status.signal !== null ? `signal ${status.signal}` : `exit code ${status.code ?? "?"}`
