/**
 * Progress on stderr, so stdout carries only the final Markdown report.
 */
const started = Date.now()

const clock = (): string => {
  const seconds = Math.floor((Date.now() - started) / 1000)
  return `${String(Math.floor(seconds / 60)).padStart(2, "0")}:${String(seconds % 60).padStart(2, "0")}`
}

export const progress = (line: string): void => {
  process.stderr.write(`[${clock()}] ${line}\n`)
}

export const fmtDuration = (seconds: number): string =>
  seconds >= 60 ? `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s` : `${Math.round(seconds)} s`
