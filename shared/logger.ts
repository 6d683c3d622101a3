/**
 * The logger library code writes to: pino-compatible, injectable, silent by default.
 * Never pass payload bytes, keys, signatures or tokens to it.
 */

/** One log method: a message, or structured fields then a message. */
export interface LogFn {
  (msg: string): void
  (fields: Record<string, unknown>, msg?: string): void
}

/** A structured logger with namespaced children (`child({ ns: 'starsock:server:relay' })`). */
export interface Logger {
  debug: LogFn
  info: LogFn
  warn: LogFn
  error: LogFn
  child: (bindings: Record<string, unknown>) => Logger
}

const noop: LogFn = () => {}

/** A logger that drops everything; the default of every library entry point. */
export const silentLogger: Logger = {
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => silentLogger
}
